"""`crossgrad bench --step-time`: one training step timed, each implementation against a
plain loop of the same network in the same framework, in the framework's worker.

plain_*.py are the plain loops (one module per framework, readable: teaching material too),
steptime.py the worker side (timing, the GEMM probe), flops.py a step's arithmetic, and
command.py the harness side (jobs, table, JSON).
"""

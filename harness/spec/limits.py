"""The limits a spec must keep, checked while it is read, before any work (README: "Limits").

Each is far beyond what the zoo or any real network of this suite's size needs, and
well inside what the four frameworks and the harness handle without failing in ways
that would be blamed on a framework rather than on the spec.
"""

SPEC_BYTES = 1 << 20     # a spec file: 1 MiB (a 256-layer spec is ~10 KB)
NESTING = 64             # tables and lists inside each other in the file; deeper input
                         # would reach the TOML/JSON decoders' and copy's recursion
NAME_CHARS = 100         # a name becomes folder and file names and CSV cells
RESIDUAL_DEPTH = 16      # residual blocks inside each other: each level costs every
                         # framework several Python frames when building and running
                         # (200 levels exhausted PyTorch's recursion limit)
LAYERS = 256             # layers in all, counting those inside residual blocks: 6x the
                         # deepest zoo model (41); a float64 check of 256 tanh/dense layers
                         # costs NumPy ~14 s of CPU, and the cost grows with the square of
                         # the count (each loss evaluation maps parameters to layers by name)
AXES = 8                 # input_shape axes (no layer takes more than 3; NumPy allows 64)
STEPS = 10 ** 9          # train.steps: Optax counts steps in int32 (2**31 ~ 2.1e9)

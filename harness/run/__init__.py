"""Running: the arrays every framework shares (Inputs), jobs, the worker process, the
executors (a local pool, Ray), the result cache, and files written atomically."""

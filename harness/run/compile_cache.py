"""JAX's persistent compilation cache for the workers, in crossgrad's cache folder.

Compiling is most of a JAX job (a step or a loss compiles in 0.1 to 1 s; it then runs in
milliseconds), and the same spec compiles to the same program every run: XLA keeps each
compiled executable under `$XDG_CACHE_HOME/crossgrad/xla` (default
`~/.cache/crossgrad/xla`), keyed by the program, the JAX and XLA versions and the flags,
so a second `crossgrad run` loads them instead (the same machine code: the same bits).
About 4 MB for the whole zoo in both dtypes; nothing is ever evicted or deleted by
crossgrad: remove the folder by hand to reclaim it.

A cache entry is machine code the worker will run, as trusted as Python's own
__pycache__: the folder is used only when it is a real folder of this user's that no one
else can write to; otherwise the workers compile as if there were no cache.
CROSSGRAD_COMPILE_CACHE=off turns it off; a JAX_COMPILATION_CACHE_DIR of the user's own
is left to JAX as it is.
"""
import os
import stat

from .cache import COMPILED, claim_cache_folder, user_cache_folder

OFF = ("0", "off", "no", "false")


def compile_cache_env(environ=None):
    """The variables that give every worker the cache (or {} where it is off or unsafe)."""
    environ = os.environ if environ is None else environ
    if environ.get("CROSSGRAD_COMPILE_CACHE", "").lower() in OFF \
            or environ.get("JAX_COMPILATION_CACHE_DIR"):
        return {}
    try:
        folder = _trusted_folder(claim_cache_folder(user_cache_folder()) / COMPILED)
    except OSError:  # a folder that is not crossgrad's (cache.claim_cache_folder)
        return {}
    if folder is None:
        return {}
    return {"JAX_COMPILATION_CACHE_DIR": str(folder),
            # every program: ours compile in well under JAX's default threshold of 1 s
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _trusted_folder(folder):
    """`folder`, made (mode 0700) if missing, when it is a directory (not a link) owned by
    this user and writable by no one else; else None."""
    try:
        folder.mkdir(exist_ok=True, mode=0o700)
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() \
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return folder

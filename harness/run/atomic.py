"""Write-then-rename, so that an interrupted run leaves the previous result or nothing.

A folder is built under a hidden temporary name beside its destination and swapped
into place when complete: with renameat2(RENAME_EXCHANGE) where Linux offers it (one
atomic step), otherwise by two renames. Temporary folders of runs that were killed
carry their pid and are removed by the next run.
"""
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import tempfile
from pathlib import Path

AT_FDCWD, RENAME_EXCHANGE = -100, 2


@contextlib.contextmanager
def atomic_dir(path):
    """Yield an empty temporary folder; on success it becomes `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, path)


@contextlib.contextmanager
def atomic_file(path, mode="w"):
    """Yield a file object; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_into_place(new, path):
    if not path.exists():
        os.rename(new, path)
        return
    if _exchange(new, path):
        shutil.rmtree(new)  # `new` now holds the previous result
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.rename(path, old)
    os.rename(new, path)
    shutil.rmtree(old)


def _exchange(a, b):
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    return libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b),
                          RENAME_EXCHANGE) == 0


def _remove_stale(path):
    """Temporary siblings left by runs whose process no longer exists."""
    for sibling in path.parent.glob(f".{path.name}.*-*"):
        parts = sibling.name[len(path.name) + 2:].split("-")
        if len(parts) >= 2 and parts[1].isdigit() and not _alive(int(parts[1])):
            shutil.rmtree(sibling, ignore_errors=True) if sibling.is_dir() else sibling.unlink()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

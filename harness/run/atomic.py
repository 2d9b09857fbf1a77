"""Write-then-rename, so that an interrupted or failed write leaves the previous result or nothing.

A folder is built under a hidden temporary name beside its destination,
`.<name>.tmp-<pid>-<random>`, whose crossgrad marker is written first, and swapped into
place when complete: with renameat2(RENAME_EXCHANGE) where Linux offers it (one atomic
step), otherwise by two renames. A file is written inside such a temporary folder and
renamed over its destination. The previous output is then removed entry by entry as its
own marker lists them (ownership.remove_owned). Temporary folders of runs that died are
removed by the next run, but only those with that exact name, a dead pid and the marker.
"""
import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .ownership import (claim_folder, entries_of, read_marker, remove_owned, unfinished,
                        write_marker)

AT_FDCWD, RENAME_NOREPLACE, RENAME_EXCHANGE = -100, 1, 2


class OutputFailed(Exception):
    """An output could not be written (a full disk, a file size limit, permissions);
    the previous output at `path` is unchanged."""

    def __init__(self, path, reason):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: could not be written ({reason}); "
                         "the previous output there, if any, is unchanged")


@contextlib.contextmanager
def atomic_dir(path, kind="output", flag="--out"):
    """Yield an empty temporary folder; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    with failures_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        tmp = _temporary_folder(path, kind)
    try:
        with failures_named(path):
            yield tmp
            write_marker(tmp, kind, entries_of(tmp))
            claim_folder(path, flag)  # again: the user may have put files there meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # made and marked by this process above
        raise
    with failures_named(path):  # a swap cut short leaves a marked temporary: the next run's
        _swap_into_place(tmp, path)


@contextlib.contextmanager
def atomic_file(path, mode="w", recheck=None, swept=False):
    """Yield a file object; on success it replaces `path` in one rename. `recheck()`, called
    just before the rename, raises when `path` is no longer ours to replace (a file put there
    while a long run was writing): the new file is then dropped and `path` kept. `swept`: the
    folder's stale temporaries were removed already (remove_stale_in), so none is looked for."""
    path = Path(path)
    with failures_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not swept:
            remove_stale(path)
        tmp = _temporary_folder(path, "temporary")
    try:
        with failures_named(path):
            with open(tmp / path.name, mode) as f:
                yield f
            if recheck is not None:
                recheck()
            os.replace(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def failures_named(path):
    """OSError while writing -> OutputFailed naming the output and the reason, in one line."""
    try:
        yield
    except OSError as err:
        raise OutputFailed(path, err.strerror or str(err)) from err


def _temporary_folder(path, kind):
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
        write_marker(tmp, kind)  # first: from now on the folder is recognisably crossgrad's
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_into_place(new, path):
    if not path.exists():
        try:
            _rename_new(new, path)
        except OSError:
            shutil.rmtree(new, ignore_errors=True)  # the new output alone, made here: no
            raise                                   # temporary is left beside `path`
        return
    if _exchange(new, path):
        _remove_previous(new, path)  # `new` now holds the previous result
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    os.rename(path, old)  # replaces the empty folder just made
    os.rename(new, path)
    _remove_previous(old, path)


def _remove_previous(old, path):
    left = remove_owned(old)
    if left:  # files that appeared after the check: kept, and said where
        print(f"crossgrad: {path}: kept {len(left)} entries crossgrad did not write in {old}",
              file=sys.stderr)


def _exchange(a, b):
    return _renameat2(a, b, RENAME_EXCHANGE) is True


def _rename_new(new, path):
    """new -> path, which did not exist a moment ago: with RENAME_NOREPLACE where Linux has
    it, so that an empty folder or a link put at `path` meanwhile is refused (EEXIST), not
    replaced as a plain rename would."""
    if _renameat2(new, path, RENAME_NOREPLACE) is None:
        os.rename(new, path)


def _renameat2(a, b, flags):
    """renameat2(a, b, flags): True, OSError, or None where libc has no renameat2."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return None
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), flags) == 0:
        return True
    if flags == RENAME_EXCHANGE:
        return False  # the caller falls back to two renames
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):  # a kernel or file system without the flag
        return None
    raise OSError(err, os.strerror(err), str(b))


def remove_stale(path):
    """Temporary siblings of `path` left by runs whose process no longer exists: exactly
    crossgrad's name pattern, a real folder, and crossgrad's marker inside. A folder still
    being written goes whole; a complete one (a previous output) only as its marker lists."""
    _remove_stale(path.parent, re.escape(path.name))


def remove_stale_in(folder):
    """remove_stale for every entry of `folder` at once: one scan of a folder that many files
    are written into (the result cache: one scan per run, not one per result, whose cost
    grows with every entry the cache keeps)."""
    _remove_stale(Path(folder), r".+")


def _remove_stale(folder, name):
    pattern = re.compile(rf"\.{name}\.tmp-(\d+)-[A-Za-z0-9_]+")
    try:
        siblings = list(os.scandir(folder))
    except OSError:
        return
    for entry in siblings:
        match = pattern.fullmatch(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False) or _alive(int(match[1])):
            continue
        if unfinished(entry.path):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif read_marker(entry.path) is not None:
            remove_owned(Path(entry.path))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

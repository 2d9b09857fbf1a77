"""Write-then-rename, so that an interrupted or failed write leaves the previous result or nothing.

A folder is built under a hidden temporary name beside its destination,
`.<name>.tmp-<pid>-<random>`, whose crossgrad marker is written first, and swapped into
place when complete: with renameat2(RENAME_EXCHANGE) where Linux offers it (one atomic
step), otherwise by two renames. A file is written inside such a temporary folder and
renamed over its destination; files that belong together (an imported spec and its
weights) are all written before the first is renamed. The previous output is then removed
entry by entry as its own marker lists them (ownership.remove_owned). A swap that fails
or is interrupted (Ctrl-C, SIGTERM) puts the previous output back and removes the new
one, unless the new one is in place already. Temporary folders of runs that died are
removed by the next run, but only those with that exact name, a dead pid and the marker.
A mount point (a Docker volume) cannot be renamed, so it is never an output folder.
Folders missing above an output (`reports/` of `reports/latest`) are made with the marker
too, of kind `parent`: every folder crossgrad creates says so.
"""
import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from .ownership import (PARENT, TEMPORARY_RANDOM, claim_folder, current_umask, entries_of,
                        process_identity, read_marker, refuse_mount_point, remove_owned,
                        temporary_pattern, temporary_prefix, unfinished, write_marker)

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
    refuse_mount_point(path, flag)
    with failures_named(path):
        make_parents(path)
        remove_stale(path)
        tmp = _temporary_folder(path, kind)
        made = _identity(tmp)
    try:
        with failures_named(path):
            yield tmp
            write_marker(tmp, kind, entries_of(tmp))
            # again: the user may have put files there meanwhile; and only the kind this
            # writes is replaced
            claim_folder(path, flag, kind)
            _swap_into_place(tmp, path, made)
    except BaseException:
        _remove_made(tmp, made)  # not yet swapped into place: still the temporary
        raise


@contextlib.contextmanager
def atomic_file(path, mode="w", recheck=None, swept=False):
    """Yield a file object; on success it replaces `path` in one rename. `recheck()`, called
    just before the rename, raises when `path` is no longer ours to replace (a file put there
    while a long run was writing): the new file is then dropped and `path` kept. `swept`: the
    folder's stale temporaries were removed already (remove_stale_in), so none is looked for."""
    path = Path(path)
    with failures_named(path):
        make_parents(path)
        if not swept:
            remove_stale(path)
        tmp = _temporary_folder(path, "temporary")
        made = _identity(tmp)
    try:
        with failures_named(path):
            with open(tmp / path.name, mode) as f:
                yield f
            if recheck is not None:
                recheck()
            os.replace(tmp / path.name, path)
    finally:
        _remove_made(tmp, made)


@contextlib.contextmanager
def atomic_files(*targets, recheck=None):
    """(path, mode), ...: yield one file object for each; on success all replace their paths,
    in the order given, once every one is written whole. A rename that fails or is
    interrupted puts back what the renames before it replaced, so the files stay a pair
    (a spec and its weights): the previous ones, or the new ones. The paths share a folder;
    a failure names the first. `recheck()`, as atomic_file's, runs before the first rename."""
    paths = [Path(path) for path, _ in targets]
    first = paths[0]
    with failures_named(first):
        make_parents(first)
        for path in paths:
            remove_stale(path)
        tmp = _temporary_folder(first, "temporary")
        made = _identity(tmp)
    try:
        with failures_named(first):
            new = [tmp / f"{i}.new" for i in range(len(targets))]
            with contextlib.ExitStack() as files:
                yield [files.enter_context(open(n, mode)) for n, (_, mode) in zip(new, targets)]
            if recheck is not None:
                recheck()
            _replace_together(new, paths, tmp)
    finally:
        _remove_made(tmp, made)


def _replace_together(new, paths, tmp):
    """Each new file over its path; each previous file is kept first as a link in `tmp` (the
    paths never go missing), to be put back if a later rename fails."""
    kept = [tmp / f"{i}.previous" for i in range(len(paths) - 1)]  # the last: nothing after
    for path, previous in zip(paths, kept):
        if os.path.lexists(path):
            _keep(path, previous)
    try:
        for n, path in zip(new, paths):
            os.replace(n, path)
    except BaseException:
        if os.path.lexists(new[-1]):  # else all are in place: the new files stay, together
            _put_back_files(new, paths, kept)
        raise


def _keep(path, previous):
    """A hard link (no copy of large weights), or a copy where the file system has none."""
    try:
        os.link(path, previous, follow_symlinks=False)
    except OSError:
        shutil.copy2(path, previous, follow_symlinks=False)


def _put_back_files(new, paths, kept):
    """Undo the renames done, by where things are (a signal may come between a rename and
    the next line): a new file no longer in `tmp` was renamed over its path."""
    for n, path, previous in zip(new, paths, kept):
        if os.path.lexists(n):  # not renamed, nor any after it
            return
        if os.path.lexists(previous):
            os.replace(previous, path)
        else:
            os.unlink(path)  # the new file, made here where there was none


@contextlib.contextmanager
def failures_named(path):
    """OSError while writing -> OutputFailed naming the output and the reason, in one line."""
    try:
        yield
    except OSError as err:
        raise OutputFailed(path, err.strerror or str(err)) from err


def make_parents(path):
    """The folders missing above `path`, made from the top down, each with the marker (kind
    PARENT, listing nothing) before anything else: every folder crossgrad creates carries
    it, and one made to hold an output is then known as crossgrad's, never replaced by an
    output (ownership.claim_folder refuses its kind) nor removed by crossgrad."""
    missing, folder = [], path.parent
    while not folder.is_dir() and folder != folder.parent:  # `.` or `/`: its own parent
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if folder.is_dir():  # made meanwhile, by another run or the user: not ours to mark
                continue
            raise
        write_marker(folder, PARENT, [])


def _temporary_folder(path, kind):
    tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(path.name), dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's is private; the result should not be
        write_marker(tmp, kind)  # first: from now on the folder is recognisably crossgrad's
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _swap_into_place(new, path, made):
    """The complete folder `new` (whose lstat identity is `made`) -> `path`, and the previous
    output at `path` removed. Whatever stops it (an error, Ctrl-C, SIGTERM) leaves no
    temporary: see _settle."""
    old = None
    try:
        if not path.exists():
            _rename_new(new, path)
            return
        if _exchange(new, path):
            previous = new  # `new` now holds the previous result
        else:
            old = previous = _sibling(path)
            _rename_new(path, old)
            _rename_new(new, path)
        _remove_previous(previous, path)
    except BaseException:
        _settle(new, path, old, made)
        raise


def _settle(new, path, old, made):
    """After a swap stopped short, by where things are (a signal may come between a rename
    and the next line): if the new output is not in place, the previous goes back to
    `path` and the new one is removed; if it is, the previous is removed as it would have
    been."""
    if _identity(new) == made:
        if old is not None and os.path.lexists(old):
            _put_back(old, path)
        _remove_made(new, made)
        return
    previous = new if os.path.lexists(new) else old
    if previous is not None and os.path.lexists(previous):
        _remove_previous(previous, path)


def _put_back(old, path):
    """The previous output, moved aside to `old`, back to `path`; where that cannot be (a
    folder put at `path` meanwhile), it stays and the user is told where it is."""
    try:
        _rename_new(old, path)
    except OSError as err:
        print(f"crossgrad: {path}: the previous output could not be put back "
              f"({err.strerror}); it is in {old}", file=sys.stderr)


def _remove_made(folder, made):
    """Remove `folder` if it is still the temporary this process made (its identity `made`):
    never whatever took its name since."""
    if _identity(folder) == made:
        shutil.rmtree(folder, ignore_errors=True)


def _identity(folder):
    """(device, inode) of `folder` itself, None if it is gone: which folder a name holds now."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _sibling(path):
    """A fresh temporary name beside `path`, in the pattern remove_stale knows; not created
    (the previous output is renamed to it, never over anything: RENAME_NOREPLACE)."""
    return path.parent / (temporary_prefix(path.name) + secrets.token_hex(TEMPORARY_RANDOM // 2))


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


@functools.cache
def _libc():
    """The C library, or None: looked up once (find_library runs ldconfig, ~10 ms, which
    would widen the moment a swap can be interrupted)."""
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def _renameat2(a, b, flags):
    """renameat2(a, b, flags): True, OSError, or None where libc has no renameat2."""
    libc = _libc()
    if libc is None or not hasattr(libc, "renameat2"):
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
    pattern = temporary_pattern(name)
    try:
        siblings = list(os.scandir(folder))
    except OSError:
        return
    for entry in siblings:
        match = pattern.fullmatch(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        marker = read_marker(entry.path)
        if marker is None or writer_alive(int(match[1]), marker):
            continue
        if unfinished(entry.path):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            remove_owned(Path(entry.path))


def writer_alive(pid, marker):
    """Whether the process that named a temporary `pid` may still be writing it: alive here,
    or of another boot or PID namespace (the marker's writer, see ownership.process_identity),
    whose processes this one cannot see; a marker written before it named its writer is
    taken to be of this one's."""
    where = (marker.get("writer") or {}).get("where") if isinstance(marker, dict) else None
    if where is not None and where != process_identity():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

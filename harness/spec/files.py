"""Opening the files a spec names, and the spec file itself: regular files only, reads bounded.

A FIFO blocks whoever reads it until someone writes, a device such as /dev/zero never
ends, and a folder is not a file. `kind_of` looks with stat, which opens nothing and
follows symlinks (a loop is named as one); `open_regular` then opens without blocking
and checks the opened file again, so a path swapped in between is caught too. Every
problem is an InputError naming the file, and the spec field that led to it if any.
"""
import errno
import os
import stat

from ..errors import InputError

KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISSOCK, "a socket"))


def kind_of(path, blame=None, field=None):
    """-> ("file" | "folder" | what else it is, size in bytes), following symlinks.

    A path that does not resolve raises InputError against `blame` (the spec that named
    it) and `field`, or against the path itself."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise InputError(blame or path, field, _why(err, path)) from None
    if stat.S_ISREG(st.st_mode):
        return "file", st.st_size
    return next((name for test, name in KINDS if test(st.st_mode)), "not a regular file"), 0


def regular_file(path, expected="a file"):
    """The size of `path` if it is a regular file; otherwise exit 2 before opening it."""
    kind, size = kind_of(path)
    if kind != "file":
        raise InputError(path, None, f"is {kind}, expected {expected}")
    return size


def open_regular(path, expected="a file"):
    """A binary file object for `path`, which must be a regular file (see the module doc)."""
    regular_file(path, expected)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise InputError(path, None, _why(err, path)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since we looked
        os.close(fd)
        raise InputError(path, None, f"is not a regular file, expected {expected}")
    return os.fdopen(fd, "rb")


def read_bounded(path, limit, expected="a file"):
    """All of a regular file of at most `limit` bytes."""
    size = regular_file(path, expected)
    if size > limit:
        raise InputError(path, None, f"is {size} bytes; at most {limit} are read")
    with open_regular(path, expected) as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew since we looked
        raise InputError(path, None, f"is more than {limit} bytes; at most {limit} are read")
    return data


def _why(err, path):
    if err.errno == errno.ENOENT or err.errno == errno.ENOTDIR:
        return f"no such file or folder: {path}"
    if err.errno == errno.ELOOP:
        return f"symlink loop: {path} never reaches a file"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {path}"
    return f"cannot read {path}: {err.strerror}"

"""What crossgrad may replace or delete: folders it made, known by the marker inside.

Every folder crossgrad creates (a report, a --save folder, a temporary folder, the
result cache) gets a `.crossgrad` file before anything else: JSON naming the tool, its
version, the kind of output, the creation time and, once the folder is complete, every
entry crossgrad wrote there, each file with its size and sha256 and each folder as a
folder. An existing output folder may be replaced only when it is missing, empty, or
carries the marker of the kind of output the command writes and holds nothing the marker
does not list, every entry as crossgrad wrote it; anything else is the user's (a file
added, one of crossgrad's edited since, a file put where crossgrad made a folder, or
another kind of output: a report is not golden arrays to replace), and the command
refuses before any work starts. When an old output is removed, only the entries its
marker lists go, and of them only those still as written: a file that appeared or changed
there later stays, and so does the folder holding it. (A marker written before
fingerprints were kept lists names only: nothing proves its files are as written, so
such a folder is refused and none of its files is removed. One written before folders
were recorded fingerprints every file it wrote: an entry it lists without a fingerprint
was a folder.)

A --json document carries a stamp instead, as its first two keys: the crossgrad version,
and the sha256 of the document as written (with that digest's own value empty). It is
replaced only while both are there and the digest still matches. The version alone proves
nothing (any JSON of the user's may hold a "crossgrad" key), so a document without the
digest, whoever wrote it (crossgrad did, before the digest was kept), is refused and kept.
"""
import datetime
import errno
import functools
import hashlib
import json
import os
import re
import stat
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath

from ..errors import InputError

MARKER = ".crossgrad"
MARKER_LIMIT = 1 << 24      # bytes; a marker is a few KB, anything larger is not ours
SHOWN = 3                   # foreign entries named in a refusal
FOLDER = "dir"              # the marker's record of a folder, where a file's is [size, sha256]
STAMP, DIGEST = "crossgrad", "crossgrad_sha256"  # a --json document's first two keys

PARENT = "parent"           # the kind of a folder crossgrad made only to hold an output

# The kind of output each flag writes (run and train --out a report, explain --out its pages,
# which it names to claim_folder). A crossgrad folder of any other kind is not replaced:
# another command's output, and no less the folders that are no command's output (the
# result cache, a worker's temporary folder, a folder made to hold an output), which hold
# what an output must not delete even when they hold nothing but their marker.
WRITES = {"--out": ("report",), "--save": ("save",)}
WHAT = {"report": "a report folder", "explain": "a folder of explain pages",
        "save": "a folder of golden arrays"}
# A refusal's name for a crossgrad folder of each kind (an output's: its kind alone)
KIND_NAMES = {"cache": "cache folder", "worker": "worker's temporary folder",
              "shared": "folder the workers share", "temporary": "temporary folder",
              PARENT: "folder made to hold an output"}


@functools.cache  # a metadata lookup scans sys.path (1.2 ms), and every marker names it
def tool_version():
    try:
        return version("crossgrad")
    except PackageNotFoundError:  # a checkout on sys.path, not installed
        return "0+unknown"


def write_marker(folder, kind, entries=None):
    """`entries` None: the folder is still being written (everything in it is crossgrad's).
    Given, each file among them is fingerprinted as it is now, and each folder recorded as
    one (so that a file put in its place later is known not to be crossgrad's).
    A `.crossgrad` already there that is not crossgrad's marker (a file of the user's, a
    link) is never written over or through: FileExistsError. The marker is written beside
    and renamed into place, which replaces a marker, never what a link points to."""
    path = Path(folder) / MARKER
    if os.path.lexists(path) and read_marker(folder) is None:
        raise FileExistsError(errno.EEXIST, "exists and is not crossgrad's marker", str(path))
    complete, entries = entries is not None, sorted(entries or [])
    records = {e: _record(Path(folder) / e) for e in entries}
    body = {"tool": "crossgrad", "version": tool_version(), "kind": kind,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "complete": complete, "entries": entries,
            "files": {e: r for e, r in records.items() if r is not None},
            "writer": {"pid": os.getpid(), "where": process_identity()}}
    handle, written = tempfile.mkstemp(prefix=f"{MARKER}.tmp-", dir=folder)
    try:
        with os.fdopen(handle, "w") as f:
            f.write(json.dumps(body, indent=1) + "\n")
        os.chmod(written, 0o666 & ~current_umask())  # mkstemp's is private; a marker is not
        os.replace(written, path)
    except BaseException:
        os.unlink(written)
        raise


def _record(path):
    """The marker's record of an entry: FOLDER, a file's fingerprint, None for anything else."""
    mode = path.lstat().st_mode
    return FOLDER if stat.S_ISDIR(mode) else fingerprint(path) if stat.S_ISREG(mode) else None


def fingerprint(path):
    """[size, sha256] of a file, read in blocks (a --save folder's arrays can be large)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return [size, digest.hexdigest()]


def as_written(folder, rel, marker):
    """Whether folder/rel is what crossgrad wrote there: a real folder where it made one, a
    file of the same size and sha256 where it wrote one (an unreadable file is not as
    written). A marker without `files` proves nothing (names only): no entry is as written;
    in one with `files`, an entry without a fingerprint was a folder (markers written before
    folders were recorded say nothing)."""
    if "files" not in marker:
        return False
    kept = marker["files"].get(rel, FOLDER)
    path = Path(folder) / rel
    try:
        found = path.lstat()
        if kept == FOLDER:
            return stat.S_ISDIR(found.st_mode)
        if not stat.S_ISREG(found.st_mode) or found.st_size != kept[0]:
            return False
        return fingerprint(path) == list(kept)
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def process_identity():
    """Where this process's pid means this process: the boot (random per boot of a host) and
    the PID namespace (a container's), or None where the system does not say (no /proc).
    os.kill(pid, 0) answers for pids of its own namespace only, so a folder two such places
    share (a bind mount, a network file system) holds temporaries whose writer's life
    cannot be told from here (atomic.writer_alive)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def read_marker(folder):
    """The marker's content if `folder` carries crossgrad's marker, else None."""
    path = Path(folder) / MARKER
    try:
        if not stat.S_ISREG(path.lstat().st_mode) or path.lstat().st_size > MARKER_LIMIT:
            return None
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(body, dict) and body.get("tool") == "crossgrad"
            and isinstance(body.get("entries"), list)
            and all(isinstance(e, str) for e in body["entries"])
            and isinstance(body.get("files", {}), dict)
            and all(v == FOLDER or isinstance(v, list) and len(v) == 2
                    for v in body.get("files", {}).values())):
        return None
    return body


def unfinished(folder, kind=None):
    """Whether `folder` is a real folder (not a link) carrying crossgrad's marker of a folder
    still being written (of `kind`, if given): everything in it is crossgrad's, and it may
    be removed whole."""
    if os.path.islink(folder) or not os.path.isdir(folder):
        return False
    marker = read_marker(folder)
    return (marker is not None and not marker.get("complete")
            and (kind is None or marker.get("kind") == kind))


def entries_of(folder):
    """Every file and folder below `folder` (links not followed), as relative posix paths."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        found += [(rel / name).as_posix() for name in dirs + files]
    return sorted(e for e in found if e != MARKER)


def foreign_entries(folder, marker):
    """Entries the marker does not list; crossgrad writes no links, so a link is foreign too."""
    listed = set(marker["entries"])
    return [e for e in entries_of(folder)
            if e not in listed or os.path.islink(Path(folder) / e)]


def edited_entries(folder, marker):
    """Entries the marker lists that are no longer as crossgrad wrote them: a file changed,
    a file where a folder was, a folder where a file was."""
    return [e for e in marker["entries"] if os.path.lexists(Path(folder) / e)
            and not as_written(folder, e, marker)]


# ---- refusing before any work starts --------------------------------------------------------

def claim_folder(path, flag, kind=None):
    """-> the folder to write for `flag` (--out, --save) as its real path, links and `..`
    resolved (its temporary is made beside it: beside `g/sub/..` is inside `g/sub`);
    InputError if it holds anything crossgrad did not write there, or is a crossgrad folder
    of another kind than `kind` (default: any kind `flag` writes), an output or not."""
    if not str(path):  # Path("") is the current folder: an empty value names no folder
        raise InputError(flag, None, "is empty; give a folder name")
    refuse_long_names(path, flag)
    target = _real(_resolved(path, flag))
    refuse_long_names(target, flag, temporary_extra(), shown=path)
    _refuse_special(path, target, flag)
    refuse_mount_point(path, flag, target)
    if not target.exists():
        _refuse_unwritable_parent(path, target, flag)
        return target
    if not target.is_dir():
        raise InputError(path, None, f"exists and is not a folder; choose another {flag}")
    entries = os.listdir(target)
    if not entries:
        return target
    marker = read_marker(target)
    if marker is None:
        raise InputError(path, None, f"exists and is not a crossgrad output "
                                     f"({_count(entries)}); choose another {flag}")
    kind = _refuse_other_kind(path, marker, flag, kind)
    if "files" not in marker and marker["entries"]:
        raise InputError(path, None, f"is a crossgrad {kind} from a version that kept no "
                                     f"fingerprints of its files, which cannot be told from "
                                     f"yours; move them or choose another {flag}")
    for found, what in ((foreign_entries, "holds {} crossgrad did not write"),
                        (edited_entries, "{} changed since crossgrad wrote them")):
        entries = found(target, marker)
        if entries:
            shown = ", ".join(entries[:SHOWN]) + (", ..." if len(entries) > SHOWN else "")
            raise InputError(path, None, f"is a crossgrad {kind} but "
                                         f"{what.format(_count(entries))} ({shown}); "
                                         f"move them or choose another {flag}")
    return target


def _real(target):
    """`target` with links, `.` and `..` resolved where its parent folder exists (there the
    kernel reads `..` as realpath does; elsewhere the path is left for the checks to judge
    as given); relative if it was."""
    if not target.parent.is_dir():
        return target
    real = os.path.realpath(target)
    return Path(real if target.is_absolute() else os.path.relpath(real))


def _refuse_other_kind(path, marker, flag, kind):
    """-> the marker's kind, if it is one that `flag` writes (`kind`, when the command says
    which); else InputError naming what is there: any other kind, known or not (a marker
    without one too), is a folder this output must not replace."""
    found = marker.get("kind")
    wanted = (kind,) if kind else WRITES[flag]
    if found not in wanted:
        raise InputError(path, None, f"is a crossgrad {_kind_name(found)}, not "
                                     f"{' or '.join(WHAT.get(k, k) for k in wanted)}; "
                                     f"choose another {flag}")
    return found


def _kind_name(kind):
    """How a refusal names a crossgrad folder of `kind` (the marker's value, whatever it is:
    an unknown one quoted and cut short, so the refusal stays one line)."""
    if not isinstance(kind, str):  # missing, or a list: not a key to look up
        return "folder of no known kind"
    if kind in WHAT:
        return kind
    return KIND_NAMES.get(kind, f"folder of kind {kind[:40]!r}")


def overlap(a, b):
    """Whether paths `a` and `b` are the same or one holds the other, links resolved."""
    a, b = (os.path.realpath(os.path.expanduser(p)).rstrip(os.sep) + os.sep for p in (a, b))
    return a.startswith(b) or b.startswith(a)


def refuse_mount_point(path, flag, target=None):
    """A mount point (a Docker volume, a mounted disk, a file bind-mounted into a container)
    cannot be renamed away, so a new output could never be swapped into its place: bad input,
    before any work. `target`: `path` resolved, if known."""
    target = Path(os.path.realpath(target or path))  # as mountinfo lists it: absolute, real
    if os.path.ismount(target) or str(target) in _mount_points():
        inside = "a folder inside it" if target.is_dir() else "a file in a mounted folder"
        raise InputError(path, None, f"is a mount point, which crossgrad cannot replace; "
                                     f"name {inside} as {flag}")


def _mount_points():
    """Every mount point of this process (Linux: /proc/self/mountinfo's fifth field, its
    spaces and tabs written as octal escapes). os.path.ismount compares a path's device with
    its parent's, which a file bind-mounted from the same disk shares."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    unescape = functools.partial(re.sub, r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)))
    return {unescape(line.split(" ")[4]) for line in lines if line.count(" ") >= 4}


def claim_file(path, flag, ours=None, whose="a JSON document crossgrad wrote"):
    """-> where to write the file for `flag` (--json): "-" for standard output, the path of a
    device or pipe as given (written straight into, never replaced), else the file with links
    resolved (replaced whole) when it does not exist, is empty, or `ours(path)` says
    crossgrad wrote it (default: the JSON stamp, and its digest still matching); `whose`
    names what may be replaced."""
    if not str(path):  # else written nowhere, silently: commands test `if args.json`
        raise InputError(flag, None, "is empty; give a file name, or - for standard output")
    if str(path) == "-" or _is_stdout(path):
        return "-"
    last = os.path.basename(str(path))
    if last in ("", ".", ".."):  # a folder's name: else `out/` and `out/.` write a file `out`
        raise InputError(path, None, f"ends in {last or '/'!r}, so it names a folder; "
                                     f"{flag} takes a file name")
    refuse_long_names(path, flag)
    try:
        mode = os.stat(path).st_mode  # through links
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise InputError(path, None, f"cannot be used ({err.strerror}); choose another {flag}")
    if mode is not None and stat.S_ISDIR(mode):
        raise InputError(path, None, f"is a folder; {flag} takes a file name")
    if mode is not None and not stat.S_ISREG(mode):
        return Path(path)
    target = _resolved(path, flag)
    refuse_long_names(target, flag, temporary_extra(), shown=path)
    if mode is not None:  # a file mounted there could not be replaced by a rename
        refuse_mount_point(path, flag, target)
    if mode is None:
        _refuse_unwritable_parent(path, target, flag)
    elif not os.access(target, os.W_OK):
        raise InputError(path, None, f"cannot be written (permission denied); "
                                     f"choose another {flag}")
    elif os.stat(target).st_size:
        why = (_json_refusal(target) if ours is None else
               None if ours(target) else f"exists and is not {whose}")
        if why:
            raise InputError(path, None, f"{why}; move it or choose another {flag}")
    return target


def seal(text):
    """The text of a JSON document whose DIGEST is "" -> the same with the sha256 of that
    text as its DIGEST: the first occurrence, which is the stamp's (outputs.write_json puts
    the stamp first, and a key inside a JSON string has its quotes escaped)."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    return text.replace(_digest_field(""), _digest_field(digest), 1)


def _digest_field(digest):
    return f'"{DIGEST}": "{digest}"'


def _json_refusal(path):
    """None when the --json target at `path` is a document as crossgrad wrote it: its stamp,
    its bytes still those sealed. Else why not. The digest is the proof: a "crossgrad" key
    alone is as likely the user's own (settings, notes), so a document without the digest
    is refused, also one crossgrad wrote before it kept the digest (it cannot tell them)."""
    raw = None
    if os.stat(path).st_size <= MARKER_LIMIT << 6:   # 1 GiB: not worth reading to find out
        try:
            with open(path, "rb") as f:
                raw = f.read()
            document = json.loads(raw)
        except (OSError, ValueError):
            raw = None
    if raw is None or not (isinstance(document, dict) and isinstance(document.get(STAMP), str)):
        return "exists and is not a JSON document crossgrad wrote"
    if DIGEST not in document:
        return (f'exists and is not a JSON document crossgrad can prove it wrote (a "{STAMP}" '
                f'key but no "{DIGEST}")')
    if not _as_sealed(raw, document[DIGEST]):
        return ("is a JSON document crossgrad wrote but changed since (its sha256 is no "
                "longer the stamp's)")
    return None


def _as_sealed(raw, digest):
    """Whether `raw`, with `digest` emptied in its stamp, hashes to `digest` (seal undone)."""
    if not (isinstance(digest, str) and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)):
        return False
    field = _digest_field(digest).encode()
    unsealed = raw.replace(field, _digest_field("").encode(), 1)
    return field in raw and hashlib.sha256(unsealed).hexdigest() == digest


def _count(entries):
    return f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"


def _resolved(path, flag):
    """A link is followed to what it names, so the link itself is never replaced; a loop of
    links names nothing."""
    p = Path(path).expanduser()
    if p.is_symlink():
        try:
            os.stat(p)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise InputError(path, None, f"is a link in a loop of links; choose another "
                                             f"{flag}") from None
        target = Path(os.path.realpath(p))
        if not target.parent.is_dir():
            raise InputError(path, None, f"is a link to {target}, whose folder does not exist; "
                                         f"choose another {flag}")
        return target
    return p


NAME_MAX = 255  # bytes in a name, where the file system cannot be asked (no folder exists yet)


TEMPORARY_RANDOM = 12  # the most random characters a temporary name ends with (atomic.py)


def temporary_prefix(name):
    """The start of every temporary name atomic.py makes beside an output `name`, which
    its stale-temporary sweep knows: `.<name>.tmp-<pid>-`, then up to TEMPORARY_RANDOM
    random characters."""
    return f".{name}.tmp-{os.getpid()}-"


def temporary_pattern(name):
    """The regular expression of temporary_prefix's names beside an output whose name matches
    the expression `name`, the pid its group 1."""
    return re.compile(rf"\.{name}\.tmp-(\d+)-[A-Za-z0-9_]+")


def temporary_extra():
    """The bytes an output's name gains in the temporary names beside it."""
    return len(temporary_prefix("")) + TEMPORARY_RANDOM


def current_umask():
    """The process's umask (read by setting it, so set back at once): what the private
    files and folders tempfile makes are opened up to, as a plain create would have."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_long_names(path, flag, extra=0, shown=None):
    """InputError, before any work, if a name crossgrad would create for `path` is longer
    than its file system takes (PC_NAME_MAX of the nearest folder that exists, 255 if it
    cannot say): each folder missing above it, and its own name with `extra` bytes more (the
    temporary it is written under first). Else the run would end in "File name too long"
    after all its work, having made the folders above. `shown`: the name as given."""
    shown = path if shown is None else shown
    full = os.path.abspath(os.path.expanduser(str(path)))
    existing = os.path.dirname(full)
    while not os.path.isdir(existing) and existing != os.path.dirname(existing):
        existing = os.path.dirname(existing)
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = NAME_MAX
    names = os.path.relpath(full, existing).split(os.sep)
    for i, name in enumerate(names):
        size = len(os.fsencode(name))
        if i < len(names) - 1 and size > limit:
            raise InputError(shown, None, f"names a folder {name[:16]}... of {size} bytes, "
                                          f"longer than its file system takes ({limit}); "
                                          f"choose a shorter {flag}")
        if i == len(names) - 1 and size + extra > limit:
            temporary = (f", {size + extra} in the temporary name it is written under first "
                         f"(.<name>.tmp-<pid>-<random>)" if extra else "")
            raise InputError(shown, None, f"its name is {size} bytes{temporary}; its file system "
                                          f"takes names up to {limit} bytes; choose a shorter "
                                          f"{flag}")


def _refuse_special(path, target, flag):
    """The current folder, a folder holding it, the home folder and / are never outputs."""
    real = Path(os.path.realpath(target))
    cwd = Path(os.path.realpath(os.getcwd()))
    home = Path(os.path.realpath(Path.home()))
    what = ("the current folder" if real == cwd else
            "a folder holding the current folder" if cwd.is_relative_to(real) else
            "the home folder" if real == home else
            "the root folder" if real == Path(real.anchor) else None)
    if what:
        raise InputError(path, None, f"is {what}, not a crossgrad output; choose another {flag}")


def _refuse_unwritable_parent(path, target, flag):
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(path, None, f"cannot be created ({parent} is not a writable folder); "
                                     f"choose another {flag}")


def _is_stdout(path):
    """/dev/stdout, /proc/self/fd/1, or another name of the pipe or terminal that is stdout."""
    if str(path) in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"):
        return True
    try:
        a, b = os.stat(path), os.fstat(1)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and not stat.S_ISREG(a.st_mode)


# ---- removing -------------------------------------------------------------------------------

def remove_owned(folder):
    """Delete what `folder`'s marker lists (deepest first), the marker, and the folder if that
    empties it. -> the entries left (nothing crossgrad did not write is ever deleted)."""
    folder = Path(folder)
    marker = read_marker(folder) or {"entries": []}
    for rel in sorted(marker["entries"], key=lambda e: e.count("/"), reverse=True):
        path = _inside(folder, rel)
        if path is not None and as_written(folder, rel, marker):  # an edited file stays
            _remove_entry(path)
    try:
        (folder / MARKER).unlink()
    except FileNotFoundError:
        pass
    try:
        folder.rmdir()
    except OSError:
        return entries_of(folder)
    return []


def _inside(folder, rel):
    """folder/rel if `rel` is a plain relative path whose every parent is a real folder."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("", ".", "..") for p in parts):
        return None
    here = folder
    for part in parts[:-1]:
        here = here / part
        try:
            if not stat.S_ISDIR(here.lstat().st_mode):
                return None
        except OSError:
            return None
    return here / parts[-1]


def _remove_entry(path):
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    try:
        if stat.S_ISDIR(mode):
            path.rmdir()  # only when empty: anything left inside is not crossgrad's
        else:
            path.unlink()
    except OSError:
        pass

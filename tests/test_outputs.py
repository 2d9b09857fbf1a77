"""What crossgrad writes where, and what it refuses to touch: output folders, markers,
temporary siblings, links, full disks and signals while writing, the resume cache.

Every command that could delete something runs in a subprocess under an address-space
limit (and a file-size limit where that is the point), inside pytest's tmp_path only.
"""
import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from crossgrad.harness.cli import main
from crossgrad.harness.run import ownership
from crossgrad.harness.run.cache import ResultCache, decode, encode, user_cache_folder

XOR = ["--zoo", "xor_2_2_1", "--frameworks", "numpy", "--quiet"]
RUN = ["run", *XOR, "--steps", "3", "--skip-native"]
MEMORY = 6 << 30  # address space of a crossgrad under test: a runaway cannot take the machine


def crossgrad(args, cwd, home, file_size=None, env=None):
    """`crossgrad ARGS` in a subprocess with limits; HOME and the cache under tmp_path
    (matplotlib's font cache in a folder of the session's, outside the tests' snapshots)."""
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
        if file_size:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    full_env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
                    MPLCONFIGDIR=os.environ["CROSSGRAD_TEST_MPL"], **(env or {}))
    return subprocess.run([sys.executable, "-m", "crossgrad.harness.cli", *args], cwd=cwd,
                          env=full_env, preexec_fn=limits, capture_output=True, text=True,
                          timeout=300)


def user_folder(path):
    """A folder of the user's: files, a hidden file, a nested folder, bytes of every value."""
    (path / "sub" / "deeper").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n")
    (path / ".hidden").write_bytes(bytes(range(256)))
    (path / "sub" / "data.txt").write_text("nested\n")
    (path / "sub" / "deeper" / "weights.npy").write_bytes(b"\x93NUMPY" + b"\0" * 100)
    return path


def snapshot(root):
    """Every entry below root: files with their bytes, folders, links with their targets."""
    found = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            found[rel] = (("link", os.readlink(p)) if p.is_symlink() else
                          ("dir",) if p.is_dir() else ("file", p.read_bytes()))
    return found


@pytest.fixture(scope="module", autouse=True)
def _matplotlib_config(tmp_path_factory):
    os.environ["CROSSGRAD_TEST_MPL"] = str(tmp_path_factory.mktemp("mpl"))
    yield
    del os.environ["CROSSGRAD_TEST_MPL"]


@pytest.fixture
def home(tmp_path):
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


# ---- 1. own only what it made -----------------------------------------------------------------

REFUSING = {
    "run --out": (["run", *XOR, "--steps", "3"], "--out"),
    "train --out": (["train", *XOR, "--steps", "3"], "--out"),
    "check --save": (["check", *XOR], "--save"),
    "train --save": (["train", *XOR, "--steps", "3"], "--save"),
}


@pytest.mark.parametrize("case", sorted(REFUSING))
def test_a_folder_of_user_files_is_refused_and_kept_byte_for_byte(tmp_path, home, case):
    args, flag = REFUSING[case]
    user_folder(tmp_path / "results")
    before = snapshot(tmp_path)
    done = crossgrad([*args, flag, "results"], tmp_path, home)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"crossgrad: results: exists and is not a crossgrad output "
                           f"(3 entries); choose another {flag}\n")
    assert snapshot(tmp_path) == before  # every byte, and nothing new (no cache, no temp)


@pytest.mark.parametrize("where", ["current", "parent", "home", "home_tilde", "checkout"])
def test_special_folders_are_never_outputs(tmp_path, home, where):
    work = user_folder(home / "project")
    (home / ".bashrc").write_text("export PS1='$ '\n")
    checkout = user_folder(tmp_path / "checkout")
    (checkout / ".git").mkdir()
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    out, cwd = {"current": (".", work), "parent": ("..", work), "home": (str(home), work),
                "home_tilde": ("~", work), "checkout": (str(checkout), work)}[where]
    before = snapshot(tmp_path)
    done = crossgrad([*RUN, "--out", out], cwd, home)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"crossgrad: {out}: ") and "choose another --out" in done.stderr
    assert snapshot(tmp_path) == before


def test_a_crossgrad_output_is_replaced_and_carries_its_marker(tmp_path, home):
    assert crossgrad([*RUN, "--out", "rep"], tmp_path, home).returncode == 0
    marker = json.loads((tmp_path / "rep" / ".crossgrad").read_text())
    assert marker["tool"] == "crossgrad" and marker["kind"] == "report" and marker["complete"]
    assert marker["version"] and marker["created"]
    assert marker["entries"] == ownership.entries_of(tmp_path / "rep")  # everything it wrote
    assert {"report.html", "manifest.json", "plots"} <= set(marker["entries"])
    first = (tmp_path / "rep" / "manifest.json").read_text()
    assert crossgrad([*RUN, "--out", "rep"], tmp_path, home).returncode == 0
    assert (tmp_path / "rep" / "manifest.json").read_text() != first  # replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "rep"]  # nothing beside


def test_an_empty_folder_may_become_an_output(tmp_path, home):
    (tmp_path / "empty").mkdir()
    assert crossgrad(["check", *XOR, "--save", "empty"], tmp_path, home).returncode == 0
    assert ownership.read_marker(tmp_path / "empty")["kind"] == "save"


def test_user_files_added_to_a_crossgrad_output_are_refused_and_kept(tmp_path, home):
    """The choice: a crossgrad folder that holds anything it did not write is refused whole
    (replacing only the listed entries would leave a mix of two runs)."""
    assert crossgrad(["check", *XOR, "--save", "golden"], tmp_path, home).returncode == 0
    (tmp_path / "golden" / "mine.txt").write_text("keep me\n")
    (tmp_path / "golden" / "xor_2_2_1" / "extra").mkdir()
    (tmp_path / "golden" / "xor_2_2_1" / "extra" / "a.bin").write_bytes(b"\0\1\2")
    saved_again_is_refused(tmp_path, home, (
        "crossgrad: golden: is a crossgrad save but holds 3 entries crossgrad did not write "
        "(mine.txt, xor_2_2_1/extra, xor_2_2_1/extra/a.bin); move them or choose another "
        "--save\n"))


def saved_again_is_refused(tmp_path, home, says):
    """`check --save golden` once more: exit 2 with the line `says`, and nothing changed."""
    before = snapshot(tmp_path)
    done = crossgrad(["check", *XOR, "--save", "golden"], tmp_path, home)
    assert done.returncode == 2 and done.stderr == says, done.stderr
    assert snapshot(tmp_path) == before


def test_a_file_edited_in_a_crossgrad_output_is_refused_and_kept(tmp_path, home):
    """The marker keeps each file's size and sha256: a file of crossgrad's that the user
    changed since is the user's now. A marker from before fingerprints proves nothing of its
    files: refused too, with its own line."""
    assert crossgrad(["check", *XOR, "--save", "golden"], tmp_path, home).returncode == 0
    marker = json.loads((tmp_path / "golden" / ".crossgrad").read_text())
    assert set(marker["files"]) == set(marker["entries"])  # each file and folder recorded
    assert all((kept == "dir") == (tmp_path / "golden" / e).is_dir()
               for e, kept in marker["files"].items())
    with open(tmp_path / "golden" / "xor_2_2_1" / "numpy.npz", "ab") as f:
        f.write(b"my notes")
    saved_again_is_refused(tmp_path, home, (
        "crossgrad: golden: is a crossgrad save but 1 entry changed since crossgrad wrote them "
        "(xor_2_2_1/numpy.npz); move them or choose another --save\n"))
    del marker["files"]  # as an older crossgrad wrote it
    (tmp_path / "golden" / ".crossgrad").write_text(json.dumps(marker))
    saved_again_is_refused(tmp_path, home, (
        "crossgrad: golden: is a crossgrad save from a version that kept no fingerprints of "
        "its files, which cannot be told from yours; move them or choose another --save\n"))


def test_an_edited_file_of_an_old_output_is_not_removed(tmp_path):
    """Removal also leaves a listed file that is no longer as written (edited after the check
    before the swap), and the folder holding it."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "report.md").write_text("crossgrad's")
    ownership.write_marker(old, "report", ["report.md"])
    (old / "report.md").write_text("crossgrad's, and mine")
    assert ownership.remove_owned(old) == ["report.md"]
    assert (old / "report.md").read_text() == "crossgrad's, and mine"


def test_a_forged_or_foreign_marker_deletes_nothing_outside(tmp_path):
    """Removal follows the marker's list, but never outside the folder or through a link."""
    outside = user_folder(tmp_path / "outside")
    old = tmp_path / "old"
    (old / "plots").mkdir(parents=True)
    (old / "report.md").write_text("r")
    (old / "link").symlink_to(outside)
    (old / "notes.txt").write_text("added later")
    entries = ["report.md", "plots", "../outside/notes.txt", str(outside / "sub" / "data.txt"),
               "link/.hidden", "link"]
    files = {"report.md": ownership.fingerprint(old / "report.md"), "plots": "dir"}
    (old / ".crossgrad").write_text(json.dumps({"tool": "crossgrad", "entries": entries,
                                                "files": files}))
    before = snapshot(outside)
    # what it did not list stays, and so does the link (listed as a folder: not as written)
    assert ownership.remove_owned(old) == ["link", "notes.txt"]
    assert snapshot(outside) == before
    assert sorted(p.name for p in old.iterdir()) == ["link", "notes.txt"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / ".crossgrad").write_text('{"tool": "someone else", "entries": []}')
    (tmp_path / "other" / "f").write_text("x")
    assert ownership.read_marker(tmp_path / "other") is None


# ---- 2. temporary and stale files ---------------------------------------------------------------

def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_crossgrads_own_stale_temporaries_are_removed(tmp_path, home):
    sib, pid = tmp_path / "sib", dead_pid()
    lookalikes = [".rep.backup-2024-05-01", f".save.old-{pid}", f".rep.tmp-{pid}-abcdefgh",
                  f".rep.old-{pid}"]
    for name in lookalikes:
        user_folder(sib / name)
    (sib / f".rep.tmp-{pid}-plainfile").write_text("a user's file with crossgrad's name\n")
    stale = sib / f".rep.tmp-{pid}-k3j4h5g6"  # a run killed while writing: crossgrad's
    stale.mkdir()
    ownership.write_marker(stale, "report")
    (stale / "report.md").write_text("half")
    finished = sib / f".rep.tmp-{pid}-zzzzzzzz"  # a previous output killed before removal,
    finished.mkdir()                              # with a file the user added since
    (finished / "report.md").write_text("old")
    ownership.write_marker(finished, "report", ["report.md"])
    (finished / "mine.txt").write_text("mine")
    before = {k: v for k, v in snapshot(sib).items()
              if not k.startswith((stale.name, finished.name))}
    assert crossgrad([*RUN, "--out", "sib/rep"], tmp_path, home).returncode == 0
    assert crossgrad(["check", *XOR, "--save", "sib/save"], tmp_path, home).returncode == 0
    after = snapshot(sib)
    assert {k: v for k, v in after.items() if k in before} == before  # every user byte
    assert not stale.exists()
    assert sorted(p.name for p in finished.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("writer, removed", [
    ("here", True),           # this boot and PID namespace, its pid gone: stale
    (None, True),             # a marker written before markers named their writer
    ("elsewhere", False)])    # another container or host: its pid says nothing here
def test_a_stale_temporary_of_another_pid_namespace_is_kept(tmp_path, writer, removed):
    """A folder shared with a container (a bind mount) holds temporaries of runs whose pids
    this process cannot see: os.kill(pid, 0) answers for its own PID namespace only, so a
    live run's temporary there looked stale. The marker names its writer's boot and
    namespace; a temporary of another is never swept."""
    from crossgrad.harness.run.atomic import remove_stale
    pid = dead_pid()
    temporary = tmp_path / f".rep.tmp-{pid}-k3j4h5g6"
    temporary.mkdir()
    ownership.write_marker(temporary, "report")
    (temporary / "report.md").write_text("half written")

    def with_writer(doc):
        if writer is None:
            del doc["writer"]
        elif writer == "elsewhere":
            doc["writer"]["where"] = "another-boot pid:[1]"
        return doc
    assert json.loads((temporary / ".crossgrad").read_text())["writer"] == {
        "pid": os.getpid(), "where": ownership.process_identity()}
    marker = temporary / ".crossgrad"
    marker.write_text(json.dumps(with_writer(json.loads(marker.read_text()))))
    remove_stale(tmp_path / "rep")
    assert temporary.exists() != removed


def test_an_error_while_writing_leaves_the_old_folder_and_no_temporary(tmp_path):
    from crossgrad.harness.run.atomic import atomic_dir
    target = tmp_path / "out"
    with atomic_dir(target, "report") as tmp:
        assert ownership.read_marker(tmp)["complete"] is False  # the marker came first
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, "report") as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("content", ["my notes\n", "{}", '{"models": []}', "[1, 2]"])
def test_json_never_replaces_a_file_crossgrad_did_not_write(tmp_path, home, content):
    (tmp_path / "mine.json").write_text(content)
    done = crossgrad(["check", *XOR, "--json", "mine.json"], tmp_path, home)
    assert done.returncode == 2
    assert done.stderr.startswith("crossgrad: mine.json: exists and is not a JSON document "
                                  "crossgrad wrote") and done.stderr.count("\n") == 1
    assert (tmp_path / "mine.json").read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "mine.json"]


@pytest.mark.parametrize("flag", ["--out", "--save", "--json"])
def test_a_loop_of_links_or_an_empty_path_is_refused_before_any_work(tmp_path, home, flag):
    """An empty name is refused as empty, naming the flag (not as `.`, the current folder
    Path("") would make of it)."""
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    command = ["train", *XOR, "--steps", "2"] if flag == "--out" else ["check", *XOR]
    for path, says in [("a", "a: "), ("", f"{flag}: is empty; give a ")]:
        before = snapshot(tmp_path)
        done = crossgrad([*command, flag, path], tmp_path, home)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"crossgrad: {says}"), done.stderr
        assert "loop" in done.stderr or "symbolic links" in done.stderr or not path
        assert snapshot(tmp_path) == before


def test_json_replaces_the_document_crossgrad_wrote_before(tmp_path, home):
    assert crossgrad(["check", *XOR, "--json", "c.json"], tmp_path, home).returncode == 0
    first = json.loads((tmp_path / "c.json").read_text())
    assert isinstance(first["crossgrad"], str)
    done = crossgrad(["train", *XOR, "--steps", "2", "--json", "c.json", "--out", "r"],
                     tmp_path, home)
    assert done.returncode == 0, done.stderr
    second = json.loads((tmp_path / "c.json").read_text())
    assert second["models"][0]["mode"] == "aligned" and "mode" not in first["models"][0]


def test_a_file_put_at_the_json_path_during_the_run_is_kept(tmp_path):
    """Claimed free before the run, then written by someone else while it ran: at the end
    the JSON is claimed again, refused, and the file keeps its bytes; nothing else stays."""
    from crossgrad.harness.errors import InputError
    from crossgrad.harness.run.outputs import write_json
    target = ownership.claim_file(tmp_path / "late.json", "--json")
    target.write_text("written while the run ran\n")
    with pytest.raises(InputError, match="is not a JSON document crossgrad wrote"):
        write_json(target, {"models": []})
    assert target.read_text() == "written while the run ran\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.json"]


@pytest.mark.parametrize("command", ["check", "train"])
def test_an_output_that_became_the_user_s_during_the_run_leaves_every_output_unwritten(
        tmp_path, monkeypatch, capsys, command):
    """--save claimed free before the run, then a folder of the user's made there while it ran:
    exit 2 and one line, and the --json (and train's --out) not written either; the --json
    was written first, before --save was refused."""
    from crossgrad.harness import api, cli
    real = getattr(api, command)

    def then_theirs(*args, **kwargs):
        result = real(*args, **kwargs)
        user_folder(tmp_path / "TS")
        return result
    monkeypatch.setattr(api, command, then_theirs)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    outputs = ["--json", "TJ.json", "--save", "TS"] + (["--out", "TO"] if command == "train" else [])
    code = cli.main([command, *XOR, *(["--steps", "2"] if command == "train" else []), *outputs])
    said = capsys.readouterr().err
    assert code == 2 and said == ("crossgrad: TS: exists and is not a crossgrad output (3 entries); "
                                  "choose another --save\n"), said
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["TS"]


# ---- links, devices, standard output --------------------------------------------------------

def test_linked_outputs_are_followed_and_the_links_kept(tmp_path, home):
    (tmp_path / "real.json").write_text("")  # empty: nothing to lose
    (tmp_path / "link.json").symlink_to("real.json")
    (tmp_path / "target").mkdir()
    (tmp_path / "linkdir").symlink_to("target")
    done = crossgrad(["train", *XOR, "--steps", "2", "--json", "link.json", "--out", "linkdir"],
                     tmp_path, home)
    assert done.returncode == 0, done.stderr
    assert os.readlink(tmp_path / "link.json") == "real.json"
    assert os.readlink(tmp_path / "linkdir") == "target"
    assert json.loads((tmp_path / "real.json").read_text())["models"][0]["name"] == "xor_2_2_1"
    assert (tmp_path / "target" / "report.html").exists()
    user_folder(tmp_path / "theirs")
    (tmp_path / "linkdir2").symlink_to("theirs")
    before = snapshot(tmp_path)
    done = crossgrad(["train", *XOR, "--steps", "2", "--out", "linkdir2"], tmp_path, home)
    assert done.returncode == 2 and "is not a crossgrad output" in done.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["-", "/proc/self/fd/1", "link"])
def test_json_to_standard_output_moves_the_tables_to_stderr(tmp_path, home, name):
    """Names of stdout that a regression could not replace: `link` is a link under tmp_path
    to /dev/stdout (crossgrad must never name /dev/stdout itself as a file to replace)."""
    if name == "link":
        (tmp_path / "link").symlink_to("/dev/stdout")
    done = crossgrad(["check", *XOR, "--json", name], tmp_path, home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["models"][0]["name"] == "xor_2_2_1"  # nothing else
    assert "xor_2_2_1  float64" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"home", name} - {"-"}
                                                                - {"/proc/self/fd/1"})
    assert ownership.claim_file("/dev/stdout", "--json") == "-"  # by name, nothing written


def test_json_into_a_named_pipe_is_written_not_replaced(tmp_path, home):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    done = crossgrad(["check", *XOR, "--json", "pipe"], tmp_path, home)
    reader.join(60)
    assert done.returncode == 0, done.stderr
    assert json.loads(got[0])["models"][0]["name"] == "xor_2_2_1"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still the pipe
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "pipe"]


def test_outputs_that_overlap_are_refused(tmp_path, home):
    done = crossgrad(["train", *XOR, "--steps", "2", "--out", "r", "--json", "r/t.json"],
                     tmp_path, home)
    assert done.returncode == 2 and done.stderr.startswith("crossgrad: --json: overlaps --out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


@pytest.mark.parametrize("where", ["is", "inside", "holds"])
def test_an_output_on_the_cache_folder_is_refused_before_any_work(tmp_path, home, where):
    """--out the cache folder ($XDG_CACHE_HOME/crossgrad), a folder in it, or the folder
    holding it: refused with the other overlaps, before the run stores any result."""
    cache = home / ".cache" / "crossgrad"
    out = {"is": cache, "inside": cache / "rep", "holds": cache.parent}[where]
    done = crossgrad([*RUN, "--out", str(out)], tmp_path, home)
    assert done.returncode == 2, done.stderr
    said = {"is": "is", "inside": "is inside", "holds": "holds"}[where]
    assert done.stderr == f"crossgrad: {out}: {said} crossgrad's cache folder ({cache}); " \
                          "choose another --out\n", done.stderr
    assert not cache.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["home"]


@pytest.mark.parametrize("command, flag, name", [
    ("run", "--out", "a" * 250),
    ("run", "--out", "sub1/" + "c" * 300 + "/x"),
    ("check", "--json", "b" * 240 + ".json"),
    ("check", "--json", "sub1/sub2/" + "b" * 240 + ".json"),
])
def test_an_output_name_too_long_is_refused_before_any_work(tmp_path, home, command, flag, name):
    """A name that fits the file system but not with the temporary it is first written under
    (`.<name>.tmp-<pid>-<random>`), or a folder above it too long: one line naming the flag,
    exit 2, before any job runs; no folder made above it."""
    args = [*RUN] if command == "run" else ["check", *XOR]
    done = crossgrad([*args, flag, name], tmp_path, home)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("crossgrad: "), \
        done.stderr
    assert f"choose a shorter {flag}" in done.stderr, done.stderr
    assert done.stdout == ""  # no table: nothing ran
    assert not (home / ".cache" / "crossgrad").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


# ---- a full disk, a file size limit, a signal while writing ---------------------------------

def test_a_full_disk_while_writing_leaves_the_previous_report(tmp_path, monkeypatch, capsys):
    import errno
    out = tmp_path / "rep"
    assert main([*RUN, "--out", str(out)]) == 0
    before = snapshot(tmp_path)
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "report.md":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", full)
    capsys.readouterr()
    assert main([*RUN, "--out", str(out)]) == 1
    assert capsys.readouterr().err == (f"crossgrad: {out}: could not be written (No space left "
                                       "on device); the previous output there, if any, is "
                                       "unchanged\n")
    assert snapshot(tmp_path) == before  # the old report, and no temporary folder


def test_a_file_size_limit_while_writing_leaves_the_previous_outputs(tmp_path, home):
    """The real thing: the kernel refuses the write (EFBIG under RLIMIT_FSIZE)."""
    first = crossgrad([*RUN, "--out", "rep"], tmp_path, home)
    assert first.returncode == 0, first.stderr
    assert crossgrad(["check", *XOR, "--json", "c.json"], tmp_path, home).returncode == 0
    before = snapshot(tmp_path / "rep"), (tmp_path / "c.json").read_bytes()
    # limits above what the cache and a worker's stderr need, below the output's size
    for args, name, limit in (([*RUN, "--out", "rep"], "rep", 100_000),
                              (["check", *XOR, "--json", "c.json"], "c.json", 1000)):
        done = crossgrad(args, tmp_path, home, file_size=limit)
        assert done.returncode == 1, done.stderr
        assert done.stderr == (f"crossgrad: {name}: could not be written (File too large); "
                               "the previous output there, if any, is unchanged\n")
    assert (snapshot(tmp_path / "rep"), (tmp_path / "c.json").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "home", "rep"]


def test_a_signal_while_writing_leaves_the_previous_report(tmp_path, monkeypatch, capsys):
    out = tmp_path / "rep"
    assert main([*RUN, "--out", str(out)]) == 0
    before = snapshot(tmp_path)
    real = Path.write_text

    def interrupted(self, *args, **kwargs):
        if self.name == "report.md":
            # a regression must fail this test, not kill the test runner
            assert callable(signal.getsignal(signal.SIGTERM)), "no SIGTERM handler while writing"
            signal.raise_signal(signal.SIGTERM)  # delivered to crossgrad's own handler
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", interrupted)
    capsys.readouterr()
    assert main([*RUN, "--out", str(out)]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == ("crossgrad: stopped by SIGTERM; nothing half-written "
                                       "was left behind\n")
    assert snapshot(tmp_path) == before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handed back


# ---- 3. the resume cache --------------------------------------------------------------------

def cache_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".npz")


def test_the_cache_lives_in_the_user_cache_folder_as_npz_and_json(tmp_path, home):
    assert crossgrad([*RUN, "--out", "data/rep"], tmp_path, home).returncode == 0
    # never beside the report (`data` was made to hold it: the marker is data's own)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".crossgrad", "rep"]
    folder = home / ".cache" / "crossgrad"
    assert ownership.read_marker(folder)["kind"] == "cache"
    assert len(cache_files(folder)) == 4  # check and train of xor, float64 and float32
    for name in cache_files(folder):
        with np.load(folder / name, allow_pickle=False) as entry:  # no pickle anywhere
            doc = json.loads(entry["result.json"].tobytes())
            assert doc["tool"] == "crossgrad" and doc["key"] == name[:-4]
            assert all(entry[k].dtype != object for k in entry.files)


def test_a_run_removes_the_cache_s_stale_temporaries_once_and_only_crossgrads(tmp_path, home):
    """The cache is swept once per run, at its first result: a temporary a killed run left
    for any entry goes (not only for the entries written again), a lookalike of the user's
    without crossgrad's marker stays, byte for byte."""
    assert crossgrad([*RUN, "--out", "rep"], tmp_path, home).returncode == 0
    folder, pid = home / ".cache" / "crossgrad", dead_pid()
    stale = folder / f".0123456789abcdef01234567.npz.tmp-{pid}-k3j4h5g6"  # another entry's
    stale.mkdir()
    ownership.write_marker(stale, "temporary")
    (stale / "0123456789abcdef01234567.npz").write_bytes(b"half")
    lookalike = user_folder(folder / f".notes.npz.tmp-{pid}-abcdefgh")
    before = snapshot(lookalike)
    assert crossgrad([*RUN, "--out", "rep"], tmp_path, home).returncode == 0
    assert not stale.exists() and snapshot(lookalike) == before


def test_the_cache_folder_follows_xdg_and_ignores_a_relative_one(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_folder() == tmp_path / "xdg" / "crossgrad"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert user_cache_folder() == tmp_path / "h" / ".cache" / "crossgrad"


class Planted:
    """Unpickling this creates a file: the proof that a pickle was (or was not) loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One run's report and the cache it left, for the tests that damage a copy of it."""
    root = tmp_path_factory.mktemp("first")
    (root / "home").mkdir()
    assert crossgrad([*RUN, "--out", "a"], root, root / "home").returncode == 0
    return root / "a", root / "home" / ".cache" / "crossgrad"


def npy_header(shape):
    """The bytes of an .npy file's header declaring float64 `shape` (no data follows)."""
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("damage", ["pickle", "garbage", "foreign", "other_key", "huge_shape",
                                    "result_list", "result_number", "document_missing"])
def test_a_corrupt_or_foreign_cache_entry_is_one_warning_and_computed_again(tmp_path, home,
                                                                            first_run, damage):
    report, cache = first_run
    folder = home / ".cache" / "crossgrad"
    shutil.copytree(cache, folder)
    names = cache_files(folder)
    victim, donor = folder / names[0], folder / names[1]
    proof = tmp_path / "pickle-was-loaded"
    if damage == "pickle":
        np.savez(victim, **{"result.json": np.array([Planted(str(proof))], dtype=object)})
    elif damage == "garbage":
        victim.write_bytes(b"PK\3\4" + os.urandom(200))
    elif damage == "huge_shape":  # the entry as it was, and one array declaring 800 GB
        with zipfile.ZipFile(victim, "a") as archive:
            archive.writestr("a999.npy", npy_header((10 ** 11,)))
    elif damage == "document_missing":
        with np.load(victim, allow_pickle=False) as entry:
            np.savez(victim, **{k: entry[k] for k in entry.files if k != "result.json"})
    else:
        with np.load(victim, allow_pickle=False) as entry:
            arrays = {k: entry[k] for k in entry.files}
        doc = json.loads(arrays["result.json"].tobytes())
        if damage == "result_list":
            doc["result"] = [1, 2]
        elif damage == "result_number":
            doc["result"] = 7
        else:
            doc["tool" if damage == "foreign" else "key"] = "something else"
        arrays["result.json"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
        np.savez(victim, **arrays)
    donor_bytes = donor.read_bytes()
    done = crossgrad([*RUN, "--out", "b", "--resume"], tmp_path, home)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "cache entry" in line]
    assert len(warnings) == 1 and str(victim) in warnings[0] and "computing it again" in warnings[0]
    assert not proof.exists()
    assert donor.read_bytes() == donor_bytes  # the good entries were used as they were
    with np.load(victim, allow_pickle=False) as entry:  # computed again and stored afresh
        assert json.loads(entry["result.json"].tobytes())["key"] == victim.stem
    assert main(["diff", str(report), str(tmp_path / "b")]) == 0  # same bits


def test_a_cache_entry_without_what_its_job_gives_is_computed_again(tmp_path, home,
                                                                     first_run):
    """Entries with the right key holding a finished job's bare status: none is used (a
    check's gradients would be missing, blamed on a framework), each is one warning and is
    computed again, and the report is the first run's."""
    report, cache = first_run
    folder = home / ".cache" / "crossgrad"
    shutil.copytree(cache, folder)
    names = cache_files(folder)
    for name in names:
        body = json.dumps({"tool": "crossgrad", "format": 1, "key": name[:-4],
                           "result": {"status": "ok", "seconds": 0.1}}).encode()
        np.savez(folder / name, **{"result.json": np.frombuffer(body, dtype=np.uint8)})
    done = crossgrad([*RUN, "--out", "b", "--resume"], tmp_path, home)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stderr.splitlines() if "cache entry" in line]
    assert len(warnings) == len(names) == 4, done.stderr
    assert all("computing it again" in line for line in warnings)
    assert "do not match" not in done.stdout + done.stderr
    assert main(["diff", str(report), str(tmp_path / "b")]) == 0  # same bits


@pytest.mark.parametrize("kind, result", [
    ("check", {"status": "ok", "seconds": 0.1}),
    ("check", {"status": "ok", "seconds": 0.1, "loss": "x", "grads": {}, "state": {},
               "fd_values": np.zeros(2)}),
    ("train", {"status": "ok", "seconds": 0.1, "curves": [], "params": {}, "state": {}}),
    ("train", {"status": "ok", "seconds": 0.1, "params": {}, "state": {},
               "curves": {"loss": [1.0], "grad_norm": [1.0], "layer_norms": {}}}),  # no lockstep
    (None, {"status": "failed", "error": "boom"}),
    (None, {"status": "ok"}),
])
def test_a_stored_result_missing_what_its_job_reads_is_unusable(tmp_path, kind, result):
    said = []
    cache = ResultCache(tmp_path / "c", reuse=True, warn=said.append)
    cache.put("k", result)
    job = {"key": "k", "kind": kind, "lockstep": True} if kind else {"key": "k"}
    assert cache.lookup(job) is None
    assert len(said) == 1 and "is unusable" in said[0], said
    good = {"status": "ok", "seconds": 0.1, "loss": 0.5, "grads": {"w": np.ones(2)},
            "state": {}, "fd_values": np.zeros(2)}
    cache.put("g", good)
    assert cache.lookup({"key": "g", "kind": "check"})["loss"] == 0.5


def test_a_named_pipe_or_folder_as_a_cache_entry_is_refused_without_waiting(tmp_path):
    """A FIFO named <key>.npz: reading it would wait for a writer forever."""
    import threading
    said = []
    cache = ResultCache(tmp_path / "c", reuse=True, warn=said.append)
    cache.put("k", {"status": "ok", "seconds": 0.1})
    fifo = tmp_path / "c" / "f.npz"
    os.mkfifo(fifo)
    (tmp_path / "c" / "d.npz").mkdir()
    got = {}
    reader = threading.Thread(target=lambda: got.update(f=cache.get("f"), d=cache.get("d")),
                              daemon=True)
    reader.start()
    reader.join(20)
    if reader.is_alive():  # release the reader (a writer opens and closes the pipe)
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
        pytest.fail("reading a named pipe as a cache entry waited for a writer")
    assert got == {"f": None, "d": None}
    assert len(said) == 2 and all("is unusable" in line for line in said), said


def test_cached_results_come_back_bit_for_bit(tmp_path):
    """Every array, dtype and scalar type of real check and train results, through the cache."""
    from crossgrad.harness import api
    from crossgrad.harness.run.executor import LocalExecutor
    from crossgrad.harness.sweep import digest
    specs = [api.zoo("resid_mlp").with_overrides(**{"train.steps": 3})]
    with LocalExecutor(workers=1) as pool:
        results = [r for outcome in (api.check(specs, frameworks=["numpy"], executor=pool),
                                     api.train(specs, frameworks=["numpy"], executor=pool))
                   for model in outcome.saved.values() for r in model[1].values()]
    cache = ResultCache(tmp_path / "c", reuse=True)
    for i, result in enumerate(results):
        cache.put(f"k{i}", result)
    back = [cache.get(f"k{i}") for i in range(len(results))]
    assert digest(back) == digest(results)
    assert [type(v) for r in back for v in r.values()] == \
        [type(v) for r in results for v in r.values()]
    weird = {"t": (1, np.float32(2.5), [np.int64(3)]), "nan": float("nan"), "s": "x", "n": None}
    arrays = {}
    assert repr(decode(json.loads(json.dumps(encode(weird, arrays))), arrays)) == repr(weird)
    assert zipfile.is_zipfile(tmp_path / "c" / "k0.npz")


def test_an_unusable_cache_entry_is_said_once_however_often_it_is_read(tmp_path):
    """Two phases of `run --resume` share a job: its broken entry was said twice."""
    said = []
    cache = ResultCache(tmp_path / "c", reuse=True, warn=said.append)
    cache.put("k", {"status": "ok", "loss": 0.5})
    (tmp_path / "c" / "k.npz").write_bytes(b"not a zip")
    assert cache.get("k") is None and cache.get("k") is None
    assert len(said) == 1 and "cache entry" in said[0] and "is unusable" in said[0], said


@pytest.mark.parametrize("found", ["link", "file", "other"])
def test_the_cache_never_writes_over_or_through_what_is_not_its_own(tmp_path, found):
    """A `.crossgrad` in the cache folder that is not crossgrad's marker (a link to a file of
    the user's, a file of the user's), or a folder of files without one: the cache once wrote
    its marker there (through the link). Now nothing is stored, and put says so once."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "c" / "crossgrad"
    folder.mkdir(parents=True)
    if found == "link":
        (folder / ".crossgrad").symlink_to(victim)
    elif found == "file":
        (folder / ".crossgrad").write_text("my notes")
    else:
        (folder / "notes.txt").write_text("my notes")
    before, said = snapshot(tmp_path), []
    cache = ResultCache(folder, warn=said.append)
    cache.put("k0", {"status": "ok"})
    cache.put("k1", {"status": "ok"})
    assert snapshot(tmp_path) == before and victim.read_text() == "precious"
    assert len(said) == 1 and "could not store results in the cache" in said[0], said
    if found != "other":  # nor does a marker of any kind, written there directly
        with pytest.raises(FileExistsError):
            ownership.write_marker(folder, "cache", [])
        assert snapshot(tmp_path) == before and victim.read_text() == "precious"


@pytest.mark.parametrize("before", ["nothing", "xla only"])
def test_the_compile_cache_and_the_result_cache_share_crossgrads_folder(tmp_path, monkeypatch,
                                                                      before):
    """A JAX worker's start made $XDG_CACHE_HOME/crossgrad/xla without the marker, and the
    result cache then took the folder for someone else's: `run --resume` stored nothing, ever.
    Both now claim it alike; a folder holding only the compiled programs (as versions before
    the marker left it) is crossgrad's, one holding anything else is not, for either."""
    from crossgrad.harness.run.compile_cache import compile_cache_env
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("CROSSGRAD_COMPILE_CACHE", raising=False)
    folder = tmp_path / "crossgrad"
    if before == "xla only":
        (folder / "xla").mkdir(parents=True)
        (folder / "xla" / "a-compiled-program").write_bytes(b"\0")
    env = compile_cache_env()
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(folder / "xla")
    said = []
    cache = ResultCache(folder, reuse=True, warn=said.append)
    cache.put("k", {"status": "ok", "seconds": 0.5})
    assert said == [] and cache.get("k") == {"status": "ok", "seconds": 0.5}
    other = tmp_path / "other"
    (other / "crossgrad").mkdir(parents=True)
    (other / "crossgrad" / "notes.txt").write_text("mine")
    monkeypatch.setenv("XDG_CACHE_HOME", str(other))
    before_other = snapshot(other)
    assert compile_cache_env() == {}
    assert snapshot(other) == before_other


def test_a_cache_warning_is_one_write(monkeypatch):
    """run's phases read the cache side by side: print's text and newline, written apart,
    put two warnings on one line."""
    from crossgrad.harness.run import cache
    writes = []
    monkeypatch.setattr(sys, "stderr", type("S", (), {"write": lambda self, t: writes.append(t),
                                                      "flush": lambda self: None})())
    cache.ResultCache(reuse=True).warn("crossgrad: cache entry k.npz is unusable")
    assert writes == ["crossgrad: cache entry k.npz is unusable\n"]


def test_a_folder_or_link_put_where_an_output_goes_is_not_replaced(tmp_path):
    """Between the check that the output does not exist and its rename, an empty folder or a
    link put there is refused (RENAME_NOREPLACE), where a plain rename would replace it."""
    from crossgrad.harness.run import atomic
    (tmp_path / "target").mkdir()
    for put in ("empty", "link"):
        new, path = tmp_path / f"new-{put}", tmp_path / put
        new.mkdir()
        path.mkdir() if put == "empty" else path.symlink_to(tmp_path / "target")
        with pytest.raises(FileExistsError):
            atomic._rename_new(new, path)
        assert new.is_dir() and (path.is_symlink() if put == "link" else path.is_dir())
    atomic._rename_new(tmp_path / "new-empty", tmp_path / "free")
    assert (tmp_path / "free").is_dir()


# ---- what stands where crossgrad wrote, and which output it is ------------------------------

def test_a_file_put_where_crossgrad_made_a_folder_is_refused_and_kept(tmp_path, home):
    """The marker records each folder it made as one: a file of the user's at that name is
    not crossgrad's (it was deleted as a listed name). A folder where a file was, too."""
    assert crossgrad(["check", *XOR, "--save", "golden"], tmp_path, home).returncode == 0
    marker = json.loads((tmp_path / "golden" / ".crossgrad").read_text())
    assert marker["files"]["xor_2_2_1"] == "dir"
    shutil.rmtree(tmp_path / "golden" / "xor_2_2_1")
    (tmp_path / "golden" / "xor_2_2_1").write_text("my own notes\n")
    saved_again_is_refused(tmp_path, home, (
        "crossgrad: golden: is a crossgrad save but 1 entry changed since crossgrad wrote them "
        "(xor_2_2_1); move them or choose another --save\n"))
    (tmp_path / "golden" / "xor_2_2_1").unlink()
    (tmp_path / "golden" / "xor_2_2_1" / "numpy.npz").mkdir(parents=True)
    saved_again_is_refused(tmp_path, home, (
        "crossgrad: golden: is a crossgrad save but 1 entry changed since crossgrad wrote them "
        "(xor_2_2_1/numpy.npz); move them or choose another --save\n"))


@pytest.mark.parametrize("recorded", ["dir", "unrecorded", "no files"])
def test_a_file_where_an_old_output_had_a_folder_is_not_removed(tmp_path, recorded):
    """Removal keeps a file standing where the marker's folder was: recorded as one, or (a
    marker from before folders were recorded) listed without a fingerprint, or (a marker
    from before fingerprints) by name alone, which proves nothing."""
    old = tmp_path / "old"
    (old / "plots").mkdir(parents=True)
    (old / "plots" / "a.png").write_bytes(b"png")
    ownership.write_marker(old, "report", ["plots", "plots/a.png"])
    marker = json.loads((old / ".crossgrad").read_text())
    if recorded != "dir":
        del marker["files"]["plots"]
    if recorded == "no files":
        del marker["files"]
    (old / ".crossgrad").write_text(json.dumps(marker))
    shutil.rmtree(old / "plots")
    (old / "plots").write_text("mine")
    assert ownership.remove_owned(old) == ["plots"]
    assert (old / "plots").read_text() == "mine"


def run_report(tmp_path, home, name="rep"):
    done = crossgrad([*RUN, "--out", name], tmp_path, home)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", [
    "explain --results R --out R", pytest.param("explain --out R/pages", marks=pytest.mark.slow),
    "explain --out R", "check --save R", pytest.param("train --save R", marks=pytest.mark.slow)])
def test_a_report_is_not_replaced_by_another_kind_of_output(tmp_path, home, case):
    """A run report is replaced by a report only: not by the explain pages made from it
    (nor written into it), not by golden arrays. One line, exit 2, before any work."""
    run_report(tmp_path, home)
    explain = ["explain", "xor_2_2_1", "--frameworks", "numpy", "--quiet"]
    args, says = {
        "explain --results R --out R": (
            [*explain, "--results", "rep", "--out", "rep"],
            "--out: overlaps --results (the same path, or one inside the other); "
            "choose paths apart"),
        "explain --out R/pages": (
            [*explain, "--results", "rep", "--out", "rep/pages"],
            "--out: overlaps --results (the same path, or one inside the other); "
            "choose paths apart"),
        "explain --out R": (
            [*explain, "--out", "rep"],
            "rep: is a crossgrad report, not a folder of explain pages; choose another --out"),
        "check --save R": (
            ["check", *XOR, "--save", "rep"],
            "rep: is a crossgrad report, not a folder of golden arrays; choose another --save"),
        "train --save R": (
            ["train", *XOR, "--steps", "2", "--save", "rep"],
            "rep: is a crossgrad report, not a folder of golden arrays; choose another --save"),
    }[case]
    before = snapshot(tmp_path)
    done = crossgrad(args, tmp_path, home)
    assert done.returncode == 2 and done.stderr == f"crossgrad: {says}\n", done.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.slow  # five commands in subprocesses: 9 s
def test_outputs_of_one_kind_replace_each_other(tmp_path, home):
    """run and train --out write the same report (one layout, read by diff and explain),
    check and train --save the same folder of golden arrays, explain --out its pages; a save
    or explain's pages are not a report."""
    run_report(tmp_path, home)
    assert crossgrad(["train", *XOR, "--steps", "2", "--out", "rep"], tmp_path,
                     home).returncode == 0
    assert crossgrad(["train", *XOR, "--steps", "2", "--save", "golden"], tmp_path,
                     home).returncode == 0
    assert crossgrad(["check", *XOR, "--save", "golden"], tmp_path, home).returncode == 0
    explain = ["explain", "xor_2_2_1", "--frameworks", "numpy", "--quiet", "--out", "pages"]
    assert crossgrad(explain, tmp_path, home).returncode == 0
    assert (tmp_path / "pages" / "index.html").is_file()
    before = snapshot(tmp_path)
    for folder, what in (("golden", "save"), ("pages", "explain")):
        done = crossgrad([*RUN, "--out", folder], tmp_path, home)
        assert done.returncode == 2 and done.stderr == (
            f"crossgrad: {folder}: is a crossgrad {what}, not a report folder; choose another "
            f"--out\n"), done.stderr
    assert snapshot(tmp_path) == before
    assert crossgrad(explain, tmp_path, home).returncode == 0  # pages replace pages


# kind -> how the refusal names a crossgrad folder of that kind
OTHER_KINDS = {"cache": "cache folder", "worker": "worker's temporary folder",
               "shared": "folder the workers share", "parent": "folder made to hold an output",
               "temporary": "temporary folder", "mine": "folder of kind 'mine'",
               None: "folder of no known kind"}


@pytest.mark.parametrize("kind", sorted(OTHER_KINDS, key=str))
@pytest.mark.parametrize("flag", ["--out", "--save"])
def test_a_crossgrad_folder_that_is_no_output_is_never_replaced(tmp_path, kind, flag):
    """Only the kind of output being written is replaced: a folder holding nothing but the
    marker of the result cache, a worker's folder, ... (or of no kind) is refused, though
    nothing in it is foreign. (Checked when claimed, and again by atomic_dir at the end.)"""
    from crossgrad.harness.errors import InputError
    from crossgrad.harness.run.atomic import atomic_dir
    folder = tmp_path / "other"
    folder.mkdir()
    ownership.write_marker(folder, kind, [] if kind != "worker" else None)
    if kind is None:  # a marker without its kind
        marker = json.loads((folder / ".crossgrad").read_text())
        del marker["kind"]
        (folder / ".crossgrad").write_text(json.dumps(marker))
    before = snapshot(tmp_path)
    wanted = "a report folder" if flag == "--out" else "a folder of golden arrays"
    says = f"is a crossgrad {OTHER_KINDS[kind]}, not {wanted}; choose another {flag}"
    with pytest.raises(InputError, match="^" + re.escape(f"{folder}: {says}") + "$"):
        ownership.claim_folder(folder, flag)
    with pytest.raises(InputError, match=re.escape(says)):
        with atomic_dir(folder, "report" if flag == "--out" else "save", flag) as tmp:
            (tmp / "report.md").write_text("new")
    assert snapshot(tmp_path) == before


@pytest.mark.slow  # subprocesses: a few seconds
def test_the_result_cache_is_never_a_report(tmp_path, home):
    """The cache folder as --out, empty but for its marker (here a copy) or full of results:
    exit 2 saying what it is, every byte kept."""
    done = crossgrad(RUN, tmp_path, home)  # fills the cache
    assert done.returncode == 0, done.stderr
    cache = home / ".cache" / "crossgrad"
    assert ownership.read_marker(cache)["kind"] == "cache" and len(os.listdir(cache)) > 2
    (tmp_path / "copy").mkdir()
    shutil.copy(cache / ".crossgrad", tmp_path / "copy")
    before = snapshot(tmp_path)
    for folder in (str(cache), "copy"):
        done = crossgrad([*RUN, "--out", folder], tmp_path, home)
        assert done.returncode == 2 and done.stderr == (
            f"crossgrad: {folder}: is a crossgrad cache folder, not a report folder; choose "
            f"another --out\n"), done.stderr
        assert snapshot(tmp_path) == before


@pytest.mark.slow  # subprocesses: a few seconds
def test_folders_made_to_hold_an_output_carry_the_marker(tmp_path, home):
    """Every folder crossgrad creates gets the marker first, also those missing above an
    output (kind `parent`, listing nothing); such a folder is no output to replace."""
    done = crossgrad(["train", *XOR, "--steps", "2", "--out", "a/b/rep", "--json",
                      "x/y/t.json"], tmp_path, home)
    assert done.returncode == 0, done.stderr
    for folder in ("a", "a/b", "x", "x/y"):
        marker = ownership.read_marker(tmp_path / folder)
        assert (marker["kind"], marker["entries"], marker["complete"]) == ("parent", [], True)
    assert ownership.read_marker(tmp_path / "a/b/rep")["kind"] == "report"
    assert json.loads((tmp_path / "x/y/t.json").read_text())["models"]
    before = snapshot(tmp_path)
    done = crossgrad(["train", *XOR, "--steps", "2", "--out", "a/b"], tmp_path, home)
    assert done.returncode == 2 and done.stderr == (
        "crossgrad: a/b: is a crossgrad folder made to hold an output, not a report folder; "
        "choose another --out\n"), done.stderr
    assert snapshot(tmp_path) == before
    assert crossgrad(["train", *XOR, "--steps", "2", "--out", "a/b/rep"], tmp_path,
                     home).returncode == 0  # the output itself is replaced as ever


def test_a_json_document_edited_since_crossgrad_wrote_it_is_refused_and_kept(tmp_path, home):
    """The stamp keeps the sha256 of the document as written: an annotated one is the
    user's."""
    import jsonschema
    from crossgrad.harness import schemas
    assert crossgrad(["check", *XOR, "--json", "c.json"], tmp_path, home).returncode == 0
    written = json.loads((tmp_path / "c.json").read_text())
    assert list(written)[:2] == ["crossgrad", "crossgrad_sha256"]
    jsonschema.validate(written, json.loads(schemas.text("check")))
    assert crossgrad(["check", *XOR, "--json", "c.json"], tmp_path, home).returncode == 0
    for edit in (lambda d: dict(d, my_review="approved, ticket 123"),
                 lambda d: dict(d, crossgrad_sha256="0" * 64)):
        (tmp_path / "c.json").write_text(json.dumps(edit(written), indent=1) + "\n")
        before = snapshot(tmp_path)
        done = crossgrad(["check", *XOR, "--json", "c.json"], tmp_path, home)
        assert done.returncode == 2 and done.stderr == (
            "crossgrad: c.json: is a JSON document crossgrad wrote but changed since (its "
            "sha256 is no longer the stamp's); move it or choose another --json\n"), done.stderr
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize("content", ["settings", "stamped before the digest"])
def test_a_json_file_with_a_crossgrad_key_but_no_digest_is_refused_and_kept(tmp_path, home,
                                                                           content):
    """A "crossgrad" key proves nothing (a user's settings may have one); only the digest
    does. So a document without it is kept, even one crossgrad wrote before it kept the
    digest: crossgrad cannot tell the two apart, and refuses what it cannot prove."""
    if content == "settings":
        text = '{"crossgrad": "my notes", "budget": 42}\n'
    else:
        assert crossgrad(["check", *XOR, "--json", "c.json"], tmp_path, home).returncode == 0
        written = json.loads((tmp_path / "c.json").read_text())
        del written["crossgrad_sha256"]
        text = json.dumps(written, indent=1) + "\n"
    (tmp_path / "c.json").write_text(text)
    before = snapshot(tmp_path)
    done = crossgrad(["check", *XOR, "--json", "c.json"], tmp_path, home)
    assert done.returncode == 2 and done.stderr == (
        'crossgrad: c.json: exists and is not a JSON document crossgrad can prove it wrote '
        '(a "crossgrad" key but no "crossgrad_sha256"); move it or choose another --json\n'), \
        done.stderr
    assert snapshot(tmp_path) == before
    assert (tmp_path / "c.json").read_text() == text


@pytest.mark.parametrize("name", ["new/", "new/.", "new/..", "folder/", "folder/."])
def test_a_json_name_that_names_a_folder_is_refused(tmp_path, home, name):
    """`--json new/` would be written as a file `new` (a trailing slash names a folder, and
    Path drops it): refused with exit 2, before any work."""
    (tmp_path / "folder").mkdir()
    before = snapshot(tmp_path)
    done = crossgrad(["check", *XOR, "--json", name], tmp_path, home)
    ending = name.rsplit("/", 1)[1] or "/"
    assert done.returncode == 2 and done.stderr == (
        f"crossgrad: {name}: ends in {ending!r}, so it names a folder; --json takes a file "
        f"name\n"), done.stderr
    assert snapshot(tmp_path) == before


def test_a_folder_named_through_dotdot_is_written_beside_itself(tmp_path, home, monkeypatch):
    """`golden/xor_2_2_1/..` is `golden`: claimed as its real path, so the temporary folder
    goes beside `golden`, not inside the folder it is about to replace."""
    assert crossgrad(["check", *XOR, "--save", "golden"], tmp_path, home).returncode == 0
    done = crossgrad(["check", *XOR, "--save", "golden/xor_2_2_1/.."], tmp_path, home)
    assert done.returncode == 0, done.stderr
    marker = ownership.read_marker(tmp_path / "golden")
    assert marker["entries"] == ownership.entries_of(tmp_path / "golden")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden", "home"]
    monkeypatch.chdir(tmp_path)
    assert ownership.claim_folder("golden/xor_2_2_1/..", "--save") == Path("golden")

"""Ray as a cluster user meets it: a head started with `ray start` and its token, a check
run through it with the same bits as the local pool and the workers' hellos in the
manifest, a refusing or unreachable cluster in one line, and `--executor ray` without an
address starting an instance of its own whatever RAY_ADDRESS names.

Every crossgrad and Ray process here runs in a subprocess with HOME, the token and Ray's
temporary folder under tmp_path; the head is always stopped, in a finally.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
CHECK = ["check", "--zoo", "mlp_3_4_2", "--frameworks", "numpy,torch", "--quiet"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, tmp_path, env):
    return subprocess.Popen([sys.executable, "-m", "crossgrad.harness.cli", *args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def crossgrad(args, tmp_path, env):
    return finish(start(args, tmp_path, env))


@pytest.fixture
def env(tmp_path):
    """A user with a home of their own and a Ray token in it: `ray get-auth-token --generate`
    writes ~/.ray/auth_token."""
    (tmp_path / "home").mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env = dict(clean, HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    subprocess.run([str(Path(sys.executable).parent / "ray"), "get-auth-token", "--generate"],
                   env=env, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "home" / ".ray" / "auth_token").stat().st_size > 0
    return env


def descendants(pid):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def short_link(target):
    """Ray's socket paths must stay under 108 bytes: reach `target` (under tmp_path) through a
    short link in the system's temporary folder. -> the link; remove_link() takes it away."""
    target.mkdir()
    link = Path(tempfile.mkdtemp(prefix="cgr")) / "r"
    link.symlink_to(target)
    return link


def remove_link(link):
    link.unlink()
    link.parent.rmdir()


class Head:
    """`ray start --head --block` on a free port, its temporary folder under tmp_path. It
    advertises the machine's address (Ray maps even --node-ip-address 127.0.0.1 to it) and
    listens on every interface, so clients on this machine reach it at 127.0.0.1:port."""

    def __init__(self, tmp_path, env):
        self.port = free_port()
        self.link = short_link(tmp_path / "ray")
        ray = Path(sys.executable).parent / "ray"
        self.proc = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--port", str(self.port),
             "--temp-dir", str(self.link), "--num-cpus", "2", "--include-dashboard", "false",
             "--disable-usage-stats"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.log, started = [], threading.Event()

        def read():
            for line in self.proc.stdout:
                self.log.append(line)
                if "Ray runtime started" in line:
                    started.set()
        threading.Thread(target=read, daemon=True).start()
        if not started.wait(120):
            self.stop()
            pytest.fail("the Ray head did not start:\n" + "".join(self.log[-20:]))

    def stop(self):
        every = descendants(self.proc.pid)
        for kill in (lambda: os.killpg(self.proc.pid, signal.SIGKILL),
                     *[lambda p=p: os.kill(p, signal.SIGKILL) for p in every]):
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(timeout=30)
        remove_link(self.link)


def saved_digest(folder):
    """sha256 over every array of a --save folder, by file and name."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*.npz")):
        with np.load(path, allow_pickle=False) as arrays:
            for name in sorted(arrays.files):
                h.update(f"{path.relative_to(folder)}:{name}:{arrays[name].dtype}".encode())
                h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def without_timings(document):
    for model in document["models"]:
        for result in model["frameworks"].values():
            result.pop("seconds", None)
    return document["models"]


@pytest.mark.slow
def test_a_started_cluster_with_its_token_gives_the_local_pools_bits(tmp_path, env):
    """The README's recipe: a token in ~/.ray/auth_token, `ray start --head`, then
    `crossgrad ... --executor ray --ray-address 127.0.0.1:PORT`."""
    local = start([*CHECK, "--json", "local.json", "--save", "saved_local"], tmp_path, env)
    head = Head(tmp_path, env)  # starting while the local pool computes: the test's time
    try:
        address = f"127.0.0.1:{head.port}"
        remote = start([*CHECK, "--executor", "ray", "--ray-address", address,
                        "--json", "ray.json", "--save", "saved_ray"], tmp_path, env)
        # the same head, a client without the token: refused in one line
        stranger = dict(env, HOME=str(tmp_path / "stranger"), RAY_NUM_REDIS_GET_RETRIES="2")
        refused = finish(start([*CHECK, "--executor", "ray", "--ray-address", address],
                               tmp_path, stranger))
        remote = finish(remote)
    finally:
        head.stop()
    local = finish(local)
    assert remote.returncode == 0, remote.stderr
    assert local.returncode == 0, local.stderr
    assert saved_digest(tmp_path / "saved_ray") == saved_digest(tmp_path / "saved_local")
    ray_doc, local_doc = (json.loads((tmp_path / f).read_text())
                          for f in ("ray.json", "local.json"))
    assert without_timings(ray_doc) == without_timings(local_doc)
    for doc in (ray_doc, local_doc):  # the workers' hellos, from either executor
        workers = doc["manifest"]["workers"]
        assert sorted(workers) == ["numpy", "torch"]
        assert all(w["ok"] and w["versions"] and w["threads"] for w in workers.values())
    assert ray_doc["manifest"]["executor"] == "ray"
    assert refused.returncode == 2
    assert refused.stderr == (f"crossgrad: --ray-address: {address}: the cluster refused this "
                              "client's authentication token; give it the cluster's token "
                              "(RAY_AUTH_TOKEN_PATH, RAY_AUTH_TOKEN or ~/.ray/auth_token) and "
                              "RAY_AUTH_MODE=token\n")


def test_an_unreachable_cluster_is_one_line(tmp_path, env):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    done = crossgrad([*CHECK, "--executor", "ray", "--ray-address", address], tmp_path, env)
    assert done.returncode == 2
    assert done.stderr == (f"crossgrad: --ray-address: {address}: no Ray cluster answers there "
                           "(Connection refused)\n")


@pytest.mark.slow
def test_without_an_address_ray_starts_an_instance_of_its_own(tmp_path, env):
    """The machine's ray_current_cluster file and RAY_ADDRESS name a cluster long gone;
    `--executor ray` alone must not try to join it."""
    dead = f"127.0.0.1:{free_port()}"
    link = short_link(tmp_path / "raytmp")
    try:
        (link / "ray").mkdir()
        (link / "ray" / "ray_current_cluster").write_text(dead)
        done = crossgrad(["check", "--zoo", "xor_2_2_1", "--frameworks", "numpy", "--quiet",
                          "--executor", "ray", "--workers", "1", "--json", "r.json"], tmp_path,
                         dict(env, RAY_TMPDIR=str(link), RAY_ADDRESS=dead))
    finally:
        remove_link(link)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    manifest = json.loads((tmp_path / "r.json").read_text())["manifest"]
    assert manifest["executor"] == "ray" and manifest["workers"]["numpy"]["ok"]
    assert [p.name for p in (tmp_path / "raytmp" / "ray").glob("session_2*")]  # its own

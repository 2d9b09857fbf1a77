"""manifest.json: everything needed to reproduce a run and to know where it ran."""
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

from .. import registry
from .environment import recorded


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def cpu():
    info = {"machine": platform.machine(), "processor": platform.processor(),
            "cores": os.cpu_count(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def git_commit():
    """The project's commit, and whether the working tree differs from it."""
    root = Path(__file__).resolve().parents[2]  # the checkout: harness/run/ is two below
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], text=True,
                                capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], text=True,
                               capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty) if commit else None}


def _plugins(spec):
    """The plugin code a spec ran, where it was found: each `plugins` entry as written, the
    file it named or the module and the sys.path folder it was imported from, and the
    sha256 of the code (the spec_hash holds it; this says which file to get back)."""
    if not spec.plugins:
        return {}
    keys = ("entry", "path", "module", "root", "sha256")
    return {"plugins": [{k: source[k] for k in keys if k in source} for source in spec.plugins]}


def build(specs, executor, threads, started, workers_said=None, extra=None):
    versions = {"python": platform.python_version(),
                **{fw: registry.version(fw) for fw in registry.ORDER}}
    from importlib.metadata import version
    versions["crossgrad"] = version("crossgrad")
    return {
        "command": [os.path.basename(sys.argv[0])] + sys.argv[1:],
        "started": started, "finished": now(),
        "versions": versions, "workers": workers_said or {},
        "cpu": cpu(), "threads": recorded(threads), "executor": executor,
        "git": git_commit(),
        "models": [{"name": s.name, "file": s.file, "dtype": s.dtype, "seed": s.seed,
                    "spec_hash": s.hash, "init_hash": s.init_hash, **_plugins(s)} for s in specs],
        **(extra or {}),
    }

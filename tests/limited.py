"""Run `crossgrad` in a child process with an address-space limit and a timeout, so that a
regression (a hang on a FIFO, a gzip bomb inflated, a huge allocation) fails its test
instead of taking the machine down. Everything the child writes goes under `tmp_path`.
"""
import json
import os
import subprocess
import sys
from dataclasses import dataclass

DRIVER = """
import json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from crossgrad.harness.cli import main
try:
    code = main(sys.argv[3:])
except SystemExit as stop:
    code = stop.code
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
json.dump({"code": code, "peak_rss": int(peak) * 1024}, open(sys.argv[2], "w"))
sys.exit(code)
"""


# a harness that refused from the spec and headers alone peaks near 80 MB (its imports): one
# that built what it should have refused (a million sweep variants, the data set) far above
NOTHING_BUILT = 200 << 20


@dataclass
class Outcome:
    code: int           # the exit status
    stderr: str
    stdout: str
    peak_rss: int       # bytes, the harness process's high-water mark


def crossgrad(tmp_path, argv, address_space=2 << 30, timeout=120):
    """Run `crossgrad argv` limited to `address_space` bytes of virtual memory (inherited by
    any worker it starts) and `timeout` seconds; caches and outputs stay under tmp_path."""
    report = tmp_path / "outcome.json"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-c", DRIVER, str(address_space), str(report),
                           *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path, env=env)
    facts = json.loads(report.read_text()) if report.exists() else {}
    return Outcome(done.returncode, done.stderr, done.stdout, facts.get("peak_rss", -1))

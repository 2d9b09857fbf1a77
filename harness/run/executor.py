"""Running jobs in worker processes: a local pool, and (in ray_executor) a Ray cluster.

A worker serves one framework; a `Slot` keeps its worker while jobs of that framework
remain, and the local pool parks the workers its slots move away from (`Parking`), so a
run imports each framework about once. A job whose worker raises, dies
(segfault, SIGKILL) or runs past the timeout comes back as {"status": "failed",
"error": ...}; the slot starts a fresh worker for the next job, and every other result
is kept. The local pool and the Ray executor share `Slot`, `JobQueue` and `drive`:
they differ only in where a slot lives (a thread here, a Ray actor there).
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import protocol
from .compile_cache import compile_cache_env
from .environment import worker_env, worker_tempdir

STARTUP_SECONDS = 300  # a worker's import and hello, unless a --timeout bounds it
WORKER_MODULE = __package__ + ".worker"


class WorkerDied(Exception):
    pass


class WorkerProcess:
    """A running `python -m crossgrad.harness.run.worker --framework X`."""

    def __init__(self, framework, threads, startup=None, compile_cache=True):
        self.framework = framework
        startup = startup or STARTUP_SECONDS
        self.stderr = tempfile.TemporaryFile()
        # the worker's TMPDIR, removed once it is gone: a worker killed in a job cannot tidy
        # up what its framework wrote there (TensorFlow's autograph files); a worker whose
        # harness is killed removes it itself (worker._exit_with_parent)
        self.scratch = worker_tempdir()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, "--framework", framework,
             "--threads", str(threads), "--parent", str(os.getpid()), "--scratch", self.scratch],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            env=dict(worker_env(threads), TMPDIR=self.scratch,
                     **(compile_cache_env() if compile_cache and framework == "jax" else {})),
            start_new_session=True)
        try:
            self.hello = self._receive(time.monotonic() + startup,
                                       f"starting (after {startup:g} s)")
        except WorkerDied:
            self.close()
            raise

    def run(self, job, timeout=None):
        try:
            protocol.send(self.proc.stdin, job)
        except (BrokenPipeError, OSError):
            raise WorkerDied(self.death_reason()) from None
        return self._receive(None if timeout is None else time.monotonic() + timeout,
                             f"after {timeout:g} s" if timeout else "")

    def _receive(self, deadline, what):
        try:
            return protocol.recv_fd(self.proc.stdout.fileno(), deadline)
        except protocol.TimedOut:
            self.kill()
            raise WorkerDied(f"timed out {what}".strip()) from None
        except protocol.Closed:
            raise WorkerDied(self.death_reason()) from None

    def death_reason(self):
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.wait()
        self._remove_scratch()
        how = (f"killed by {signal.Signals(-code).name}" if code < 0
               else f"exited with status {code}")
        tail = self.stderr_tail()
        return f"worker {how}" + (f"; stderr: {tail}" if tail else "")

    def stderr_tail(self, lines=3):
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def hang_up(self):
        """Close its stdin: the worker finishes its job, if any, and exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def close(self):
        try:
            self.hang_up()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
            self.proc.wait()
        self.stderr.close()
        self._remove_scratch()

    def _remove_scratch(self):
        """The folder made above for this worker alone, once the worker has ended."""
        if self.scratch is not None and self.proc.poll() is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


class Parking:
    """Idle workers kept for later jobs of their framework, at most `per_framework` of each
    (the number of slots: as many as could ever run side by side): a slot that moves on to
    another framework parks its worker here instead of closing it, so a run of several
    phases (check, train, native) imports each framework at most once per slot, never
    again for a later phase (a TensorFlow import is seconds of CPU)."""

    def __init__(self, per_framework=1):
        self.idle, self.lock, self.per_framework = {}, threading.Lock(), per_framework

    def take(self, framework):
        """A live parked worker of `framework`, or None."""
        with self.lock:
            parked = self.idle.get(framework)
            worker = parked.pop() if parked else None
        if worker is not None and worker.proc.poll() is not None:  # died while parked
            worker.close()
            return self.take(framework)
        return worker

    def put(self, worker):
        with self.lock:
            parked = self.idle.setdefault(worker.framework, [])
            if len(parked) < self.per_framework:
                parked.append(worker)
                return
        worker.close()

    def close(self, kill=False, also=()):
        """Close every parked worker and `also` (workers leaving with them): all are told
        first, so that they exit side by side."""
        with self.lock:
            workers = [w for parked in self.idle.values() for w in parked] + [*also]
            self.idle = {}
        for worker in workers:
            if kill:
                worker.kill()
            else:
                worker.hang_up()
        for worker in workers:
            worker.close()


class Slot:
    """One place where jobs run, one at a time: it keeps its worker between jobs of the
    same framework, starts a fresh one after a death, and says when a framework cannot start.
    With a `parking`, a worker it moves away from waits there for a later job of its own."""

    def __init__(self, threads, timeout, parking=None, compile_cache=True):
        self.threads, self.timeout, self.worker = threads, timeout, None
        self.parking, self.compile_cache = parking, compile_cache

    @property
    def framework(self):
        return self.worker.framework if self.worker else None

    def run(self, job):
        """-> (result, the new worker's hello or None, whether the framework failed to start)."""
        hello = None
        if self.worker is not None and self.worker.framework != job["framework"]:
            self.park()
        if self.worker is None and self.parking is not None:
            self.worker = self.parking.take(job["framework"])  # its hello was said already
        if self.worker is None:
            try:
                self.worker = WorkerProcess(job["framework"], self.threads, self.timeout,
                                            self.compile_cache)
            except WorkerDied as err:
                return {"status": "failed", "error": f"worker could not start: {err}"}, None, True
            if not self.worker.hello.get("ok"):
                error = self.worker.hello.get("error", "import failed")
                self.close()
                return {"status": "skipped", "error": error}, None, True
            hello = self.worker.hello
        try:
            return self.worker.run(job, self.timeout), hello, False
        except WorkerDied as err:
            self.worker.kill()
            self.worker.close()
            self.worker = None
            return {"status": "failed", "error": str(err)}, hello, False

    def park(self):
        if self.parking is None:
            self.close()
        elif self.worker is not None:
            self.parking.put(self.worker)
            self.worker = None

    def close(self, kill=False):
        """`kill`: the run is being abandoned (Ctrl-C, SIGTERM); do not wait for a job."""
        if self.worker is not None:
            if kill:
                self.worker.kill()
            self.worker.close()
            self.worker = None


# the longest import first, then the slower frameworks (their jobs are the long ones)
FRAMEWORK_ORDER = ("tensorflow", "jax", "torch", "numpy")


def schedule_order(job):
    """A sort key: framework by FRAMEWORK_ORDER, then the larger jobs first (loss evaluations
    times parameters), so the last jobs of a phase, where a slot may wait, are short ones."""
    rank = (FRAMEWORK_ORDER.index(job["framework"]) if job["framework"] in FRAMEWORK_ORDER
            else len(FRAMEWORK_ORDER))
    if job["kind"] == "check":
        evaluations = 1 + len(job.get("probes", ())) * len(_or_empty(job.get("steps")))
    else:
        evaluations = len(_or_empty(job.get("batches"))) * (2 if job.get("lockstep") else 1)
    size = sum(getattr(p, "size", 1) for p in (job.get("params") or {}).values())
    return rank, -evaluations * (1 + size)


def _or_empty(sequence):
    return () if sequence is None else sequence


class JobQueue:
    """Jobs not yet started, in `schedule_order`; a slot prefers its own framework, then one
    nobody runs."""

    def __init__(self, jobs):
        self.pending = sorted(enumerate(jobs), key=lambda entry: schedule_order(entry[1]))
        self.running = {}  # slot -> framework
        self.lock = threading.Lock()

    def take(self, slot, framework):
        with self.lock:
            others = {fw for s, fw in self.running.items() if s != slot}
            for rule in (lambda fw: fw == framework, lambda fw: fw not in others, lambda fw: True):
                for pos, (index, job) in enumerate(self.pending):
                    if rule(job["framework"]):
                        del self.pending[pos]
                        self.running[slot] = job["framework"]
                        return index, job
            self.running.pop(slot, None)
            return None

    def drop_framework(self, framework):
        """Take every remaining job of `framework` off the queue (it cannot start)."""
        with self.lock:
            dropped = [(i, j) for i, j in self.pending if j["framework"] == framework]
            self.pending = [(i, j) for i, j in self.pending if j["framework"] != framework]
            return dropped


def drive(jobs, slots, run_on, on_result=None, serving=lambda n: None):
    """Run `jobs` on `slots` slots, one thread each: `run_on(n, job)` runs a job on slot n and
    returns Slot.run's triple; `serving(n)` is the framework slot n's worker already serves.
    -> (results in job order, {framework: hello of each worker started})."""
    results, hellos, queue = [None] * len(jobs), {}, JobQueue(jobs)

    def finish(index, result):
        results[index] = result
        if on_result:
            on_result(jobs[index], result)

    def loop(n):
        framework = serving(n)
        while (taken := queue.take(n, framework)) is not None:
            index, job = taken
            result, hello, unstartable = run_on(n, job)
            framework = None if unstartable else job["framework"]
            if hello:
                hellos[job["framework"]] = hello
            finish(index, result)
            if unstartable:  # the same import would fail again: the framework's jobs end here
                for i, _ in queue.drop_framework(job["framework"]):
                    finish(i, dict(result))

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, hellos


class LocalExecutor:
    """A pool of `workers` slots (default: one per CPU core) on this machine. `compile_cache`:
    whether JAX workers load and store compiled programs (compile_cache.py); the benchmarks
    turn it off, to time compiling as a first run pays it."""

    name = "local"

    def __init__(self, workers=None, threads=1, timeout=None, compile_cache=True):
        self.workers = workers or os.cpu_count() or 1
        self.threads, self.timeout, self.compile_cache = threads, timeout, compile_cache
        self.hellos = {}
        self.slots = []           # kept between run() calls, with their workers, until close()
        self.parking = Parking(self.workers)  # the workers no slot serves now, until close()

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc):
        self.close(kill=kind is not None)

    def close(self, kill=False):
        serving = [slot.worker for slot in self.slots if slot.worker is not None]
        for slot in self.slots:
            slot.worker = None
        self.slots = []
        self.parking.close(kill, also=serving)

    def run(self, jobs, on_result=None):
        """Run every job; results in job order, each a dict with a "status"."""
        while len(self.slots) < min(self.workers, len(jobs)):
            self.slots.append(Slot(self.threads, self.timeout, self.parking, self.compile_cache))
        results, hellos = drive(jobs, min(self.workers, len(jobs)),
                                lambda n, job: self.slots[n].run(job), on_result,
                                lambda n: self.slots[n].framework)
        self.hellos.update(hellos)
        return results

"""Running jobs in worker processes: a local pool, and (in ray_executor) a Ray cluster.

A worker serves one framework; a `Slot` keeps its worker while jobs of that framework
remain, and the local pool parks the workers its slots move away from (`Parking`), so a
run imports each framework about once. A job whose worker raises, dies
(segfault, SIGKILL) or runs past the timeout comes back as {"status": "failed",
"error": ...}; the slot starts a fresh worker for the next job, and every other result
is kept. The local pool and the Ray executor share `Slot` and `Service` (the slots'
threads and their one queue, which run() calls from several threads add to side by
side): they differ only in where a slot lives (a thread here, a Ray actor there).
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from contextlib import contextmanager

from . import protocol
from .compile_cache import compile_cache_env
from .environment import SHARED_VARIABLE, remove_shared, shared_tempdir, worker_env, worker_tempdir

STARTUP_SECONDS = 300  # a worker's import and hello, unless a --timeout bounds it
WORKER_MODULE = __package__ + ".worker"


class WorkerDied(Exception):
    pass


class WorkerProcess:
    """A running `python -m crossgrad.harness.run.worker --framework X`."""

    def __init__(self, framework, threads, startup=None, compile_cache=True, shared=None,
                 greet=True):
        """`greet`: wait here for its hello (greet()); else the first greet() waits."""
        self.framework, self.hello = framework, None
        self.startup, self.started = startup or STARTUP_SECONDS, time.monotonic()
        self.stderr = tempfile.TemporaryFile()
        # the worker's TMPDIR, removed once it is gone: a worker killed in a job cannot tidy
        # up what its framework wrote there (TensorFlow's autograph files); a worker whose
        # harness is killed removes it itself (worker._left_behind)
        self.scratch = worker_tempdir()
        env = dict(worker_env(threads), TMPDIR=self.scratch,
                   **(compile_cache_env() if compile_cache and framework == "jax" else {}))
        # the folder of this executor, or none: never one the harness's own environment names
        # (another run's), which the worker would write into and remove with its own
        env.pop(SHARED_VARIABLE, None)
        if shared:
            env[SHARED_VARIABLE] = shared
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, "--framework", framework,
             "--threads", str(threads), "--parent", str(os.getpid()), "--scratch", self.scratch],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
            start_new_session=True)
        if greet:
            self.greet()

    def greet(self):
        """-> its hello, once its framework is imported: waited for the first time, within
        `startup` seconds of its start (else WorkerDied, and it is closed)."""
        if self.hello is None:
            try:
                self.hello = self._receive(self.started + self.startup,
                                           f"starting (after {self.startup:g} s)")
            except WorkerDied:
                self.close()
                raise
        return self.hello

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
        self.proc.stdout.close()  # its pipe, else left to the garbage collector (ResourceWarning)
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
            if kill or worker.hello is None:  # one started ahead and never used: no job ran
                worker.kill()
            else:
                worker.hang_up()
        for worker in workers:
            worker.close()


class SharedFolder:
    """The folder the workers of one executor share (environment.shared_tempdir): made when
    a first worker starts, removed by remove() (the executor's close), or else when this
    object is collected or the process exits."""

    def __init__(self):
        self.folder, self.finalizer = None, None
        self.lock = threading.Lock()

    def path(self):
        with self.lock:
            if self.folder is None:
                self.folder = shared_tempdir()
                self.finalizer = weakref.finalize(self, remove_shared, self.folder)
            return self.folder

    def remove(self):
        with self.lock:
            if self.finalizer is not None:
                self.finalizer()
            self.folder, self.finalizer = None, None


class Slot:
    """One place where jobs run, one at a time: it keeps its worker between jobs of the
    same framework, starts a fresh one after a death, and says when a framework cannot start.
    With a `parking`, a worker it moves away from waits there for a later job of its own."""

    def __init__(self, threads, timeout, parking=None, compile_cache=True, shared=None):
        self.threads, self.timeout, self.worker = threads, timeout, None
        self.parking, self.compile_cache = parking, compile_cache
        self.shared = shared  # -> the path of the folder its workers share (SharedFolder)

    @property
    def framework(self):
        return self.worker.framework if self.worker else None

    def run(self, job):
        """-> (result, the new worker's hello or None, whether the framework failed to start)."""
        hello = None
        if self.worker is not None and self.worker.framework != job["framework"]:
            self.park()
        if self.worker is None and self.parking is not None:
            self.worker = self.parking.take(job["framework"])
        if self.worker is None:
            self.worker = WorkerProcess(job["framework"], self.threads, self.timeout,
                                        self.compile_cache,
                                        self.shared() if self.shared else None, greet=False)
        if self.worker.hello is None:  # a new worker, or one started ahead (LocalExecutor.start)
            try:
                hello = self.worker.greet()
            except WorkerDied as err:
                self.worker = None
                return {"status": "failed", "error": f"worker could not start: {err}"}, None, True
            if not hello.get("ok"):
                self.close()
                return ({"status": "skipped", "error": hello.get("error", "import failed")},
                        None, True)
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
    rank = framework_rank(job["framework"])
    if job["kind"] == "check":
        evaluations = 1 + len(job.get("probes", ())) * len(_or_empty(job.get("steps")))
    else:
        evaluations = len(_or_empty(job.get("batches"))) * (2 if job.get("lockstep") else 1)
    size = sum(getattr(p, "size", 1) for p in (job.get("params") or {}).values())
    return rank, -evaluations * (1 + size)


def framework_rank(framework):
    return (FRAMEWORK_ORDER.index(framework) if framework in FRAMEWORK_ORDER
            else len(FRAMEWORK_ORDER))


def _or_empty(sequence):
    return () if sequence is None else sequence


class JobQueue:
    """Jobs not yet started, from every run() under way: by their caller's priority (lower
    first), then `schedule_order`, then the order given; a slot prefers its own framework,
    then one nobody runs. `serving`: the slots with a thread taking from it.

    Jobs with the same "key" (jobs.job_key: what determines the result) run once: the one
    taken first runs, at the best priority any caller gave it, and those queued meanwhile
    take its result; so do later ones while `known` is kept (Service.sharing), should it be
    "ok". A native-defaults run with no pitfall in play is its aligned run (api.train)."""

    def __init__(self):
        self.pending = []  # (sort key, batch, index in the batch, job)
        self.running = {}  # slot -> framework
        self.serving = set()
        self.added = 0
        self.twins = {}    # job key -> [(batch, index)] waiting for the one that runs
        self.known = None  # job key -> its "ok" result, while Service.sharing
        self.lock = threading.Lock()

    def add(self, batch, priority, slots):
        """Queue `batch`'s jobs; -> (the slots (of range(slots)) with no thread, for which the
        caller starts one each; [(index, result)] of the jobs whose result is known)."""
        with self.lock:
            self.added += 1
            known = []
            for i, job in enumerate(batch.jobs):
                key = job.get("key")
                if self.known and key in self.known:
                    known.append((i, self.known[key]))
                elif key in self.twins:
                    self.twins[key].append((batch, i))
                else:
                    self.pending.append(((priority, *schedule_order(job), self.added, i),
                                         batch, i, job))
            self.pending.sort(key=lambda entry: entry[0])
            idle = [n for n in range(slots) if n not in self.serving] if self.pending else []
            self.serving.update(idle)
            return idle, known

    def take(self, slot, framework):
        """-> (key, batch, index, job), or None: then the slot's thread ends. The slot's own
        framework, else one no other slot runs, among the jobs of the first priority queued;
        then the same among all; then any job (a second worker of a framework)."""
        with self.lock:
            others = {fw for s, fw in self.running.items() if s != slot}
            first = self.pending[0][0][0] if self.pending else None
            for level in (lambda key: key[0] == first, lambda key: True):
                for rule in (lambda fw: fw == framework, lambda fw: fw not in others):
                    for pos, (key, _, _, job) in enumerate(self.pending):
                        if level(key) and rule(job["framework"]):
                            return self._start(slot, pos)
            if self.pending:
                return self._start(slot, 0)
            self.running.pop(slot, None)
            self.serving.discard(slot)
            return None

    def _start(self, slot, pos):
        entry = self.pending.pop(pos)
        job = entry[3]
        self.running[slot] = job["framework"]
        if job.get("key") is not None:  # its twins queued so far wait for it, and later ones
            key = job["key"]
            self.twins[key] = [(b, i) for _, b, i, j in self.pending if j.get("key") == key]
            self.pending = [e for e in self.pending if e[3].get("key") != key]
        return entry

    def seen(self, key, result):
        """A result for `key` from outside the queue (the result cache): -> whether a job
        asked for this run already had it; else it is kept as a finished job's is."""
        with self.lock:
            if self.known is None:
                return False
            if key in self.known:
                return True
            self.known[key] = result
            return False

    def settle(self, job, result):
        """-> [(batch, index)] of `job`'s twins, which take its `result`."""
        with self.lock:
            if job.get("key") is None:
                return []
            if self.known is not None and result.get("status") == "ok":
                self.known[job["key"]] = result
            return self.twins.pop(job["key"], [])

    def drop_framework(self, framework):
        """Take every remaining job of `framework` off the queue (it cannot start)."""
        with self.lock:
            dropped = [e for e in self.pending if e[3]["framework"] == framework]
            self.pending = [e for e in self.pending if e[3]["framework"] != framework]
            return dropped


class Batch:
    """The jobs of one run() call, and their results as they come. An exception of
    `on_result` is kept for the caller (`error`): the slot's thread goes on serving."""

    def __init__(self, jobs, on_result):
        self.jobs, self.on_result = jobs, on_result
        self.results, self.left, self.error = [None] * len(jobs), len(jobs), None
        self.lock, self.done = threading.Lock(), threading.Event()
        if not jobs:
            self.done.set()

    def finish(self, index, result):
        self.results[index] = result
        try:
            if self.on_result:
                self.on_result(self.jobs[index], result)
        except Exception as err:
            self.error = self.error or err
        with self.lock:
            self.left -= 1
            if self.left == 0:
                self.done.set()


class Service:
    """`slots` slots, one thread each while there is work, taking jobs from one queue that
    any number of run() calls add to: `run_on(n, job)` runs a job on slot n and returns
    Slot.run's triple; `serving(n)` is the framework slot n's worker already serves. Calls
    from several threads at once (the phases of `crossgrad run`) share the slots, so a slot
    whose phase has no job left takes the next phase's instead of waiting at its end."""

    def __init__(self, slots, run_on, serving=lambda n: None):
        self.slots, self.run_on, self.serving = slots, run_on, serving
        self.queue, self.hellos = JobQueue(), {}  # {framework: hello of each worker started}

    @contextmanager
    def sharing(self):
        """Inside: a job whose key ran already takes that result ("shared") instead of running
        again (JobQueue); the phases of one run are side by side in it. Outside, results are
        not kept: a caller may well run the same jobs again on purpose (a determinism test)."""
        self.queue.known = {}
        try:
            yield
        finally:
            self.queue.known = None

    def seen(self, key, result):
        """Whether a job of this run had `key`'s result already (JobQueue.seen): a cached
        result two phases read is "cached" once and "shared" the second time."""
        return self.queue.seen(key, result)

    def run(self, jobs, on_result=None, priority=0):
        """Run `jobs`, before any of a later `priority`; -> their results, in job order."""
        batch = Batch(jobs, on_result)
        idle, known = self.queue.add(batch, priority, self.slots)
        for n in idle:
            threading.Thread(target=self._serve, args=(n,), daemon=True).start()
        for index, result in known:
            batch.finish(index, dict(result, shared=True))
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results

    def _serve(self, n):
        framework = self.serving(n)
        while (taken := self.queue.take(n, framework)) is not None:
            _, batch, index, job = taken
            try:
                result, hello, unstartable = self.run_on(n, job)
            except Exception as err:  # a result it is, or its caller would wait for ever
                result, hello, unstartable = _failed(err), None, False
            framework = None if unstartable else job["framework"]
            if hello:
                self.hellos[job["framework"]] = hello
            batch.finish(index, result)
            for twin, i in self.queue.settle(job, result):
                twin.finish(i, dict(result, shared=True))
            if unstartable:  # the same import would fail again: the framework's jobs end here
                for _, other, i, _ in self.queue.drop_framework(job["framework"]):
                    other.finish(i, dict(result))


def _failed(err):
    return {"status": "failed", "error": f"{type(err).__name__}: {err}"}


class Phase:
    """An executor as one phase of a run sees it: its jobs go before those of phases with a
    larger `priority` that are queued side by side with them (Service.run)."""

    def __init__(self, executor, priority):
        self.executor, self.priority = executor, priority

    def run(self, jobs, on_result=None):
        return self.executor.run(jobs, on_result, priority=self.priority)

    def __getattr__(self, name):
        return getattr(self.executor, name)


def side_by_side(executor, phases):
    """Run each of `phases` (a function of an executor) in a thread of its own, all on
    `executor`, each phase's jobs before those of the phases after it (Phase); -> their
    returns, in order. An exception in a phase is raised once every phase has ended."""
    returns, raised = [None] * len(phases), []

    def run(rank):
        try:
            returns[rank] = phases[rank](Phase(executor, rank))
        except BaseException as err:  # raised below, in the caller's thread
            raised.append(err)

    threads = [threading.Thread(target=run, args=(rank,), daemon=True)
               for rank in range(len(phases))]
    with executor.sharing():  # a job two phases ask for runs once
        for thread in threads:
            thread.start()
        for thread in threads:  # Ctrl-C lands here; the executor's exit kills the workers
            thread.join()
    if raised:
        raise raised[0]
    return returns


class Serviced:
    """What an executor with a `service` (Service) says of it: the workers' hellos, and its
    sharing() and seen() for the phases of one run."""

    @property
    def hellos(self):
        return self.service.hellos

    def sharing(self):
        return self.service.sharing()

    def seen(self, key, result):
        return self.service.seen(key, result)

    def __enter__(self):
        return self

    def start(self, frameworks):
        """Start workers of these frameworks ahead of their jobs, where the executor can."""


class LocalExecutor(Serviced):
    """A pool of `workers` slots (default: one per CPU core) on this machine. `compile_cache`:
    whether JAX workers load and store compiled programs (compile_cache.py); the benchmarks
    turn it off, to time compiling as a first run pays it."""

    name = "local"

    def __init__(self, workers=None, threads=1, timeout=None, compile_cache=True):
        self.workers = workers or os.cpu_count() or 1
        self.threads, self.timeout, self.compile_cache = threads, timeout, compile_cache
        self.parking = Parking(self.workers)  # the workers no slot serves now, until close()
        self.shared = SharedFolder()
        # kept between run() calls, with their workers, until close()
        self.slots = [Slot(threads, timeout, self.parking, compile_cache, self.shared.path)
                      for _ in range(self.workers)]
        self.service = Service(self.workers, lambda n, job: self.slots[n].run(job),
                               lambda n: self.slots[n].framework)

    def __exit__(self, kind, *exc):
        self.close(kill=kind is not None)

    def start(self, frameworks):
        """A worker of each of the frameworks the schedule starts first (one per slot) starts
        now and waits parked for its first job: its import (TensorFlow's: 2.5 s) runs while
        the harness still draws the inputs and makes the jobs, on a core that would wait."""
        for framework in sorted(frameworks, key=framework_rank)[:self.workers]:
            self.parking.put(WorkerProcess(framework, self.threads, self.timeout,
                                           self.compile_cache, self.shared.path(), greet=False))

    def close(self, kill=False):
        serving = [slot.worker for slot in self.slots if slot.worker is not None]
        for slot in self.slots:
            slot.worker = None
        self.parking.close(kill, also=serving)
        self.shared.remove()  # its workers are gone

    def run(self, jobs, on_result=None, priority=0):
        """Run every job; results in job order, each a dict with a "status". Calls from
        several threads share the slots (Service)."""
        return self.service.run(jobs, on_result, priority)

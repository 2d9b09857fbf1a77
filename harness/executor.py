"""Running jobs in worker processes: a local pool, and (in ray_executor) a Ray cluster.

A worker serves one framework; a pool slot keeps its worker while jobs of that
framework remain, so each framework is imported once per slot. A job whose worker
raises, dies (segfault, SIGKILL) or runs past the timeout comes back as
{"status": "failed", "error": ...}; the slot starts a fresh worker for the next job,
and every other result is kept.
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import protocol
from .threads import worker_env

STARTUP_SECONDS = 300


class WorkerDied(Exception):
    pass


class WorkerProcess:
    """A running `python -m harness.worker --framework X`."""

    def __init__(self, framework, threads):
        self.framework = framework
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.worker", "--framework", framework,
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            env=worker_env(threads), start_new_session=True)
        self.hello = self._receive(time.monotonic() + STARTUP_SECONDS, "starting")

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

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
            self.proc.wait()
        self.stderr.close()


class JobQueue:
    """Jobs not yet started; a slot prefers its own framework, then one nobody runs."""

    def __init__(self, jobs):
        self.pending = list(enumerate(jobs))
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


class LocalExecutor:
    """A pool of `workers` slots (default: one per CPU core) on this machine."""

    name = "local"

    def __init__(self, workers=None, threads=1, timeout=None):
        self.workers = workers or os.cpu_count() or 1
        self.threads, self.timeout = threads, timeout
        self.hellos = {}
        self.idle = []            # workers kept between run() calls, until close()
        self.lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.close()

    def run(self, jobs, on_result=None):
        """Run every job; results in job order, each a dict with a "status"."""
        results = [None] * len(jobs)
        queue = JobQueue(jobs)

        def finish(index, result):
            results[index] = result
            if on_result:
                on_result(jobs[index], result)

        slots = [threading.Thread(target=self._slot, args=(n, queue, finish), daemon=True)
                 for n in range(min(self.workers, len(jobs)))]
        for t in slots:
            t.start()
        for t in slots:
            t.join()
        return results

    def _slot(self, slot, queue, finish):
        worker = None
        while (taken := queue.take(slot, worker.framework if worker else None)) is not None:
            index, job = taken
            if worker is not None and worker.framework != job["framework"]:
                worker.close()
                worker = None
            if worker is None:
                worker, status, error = self._idle_or_start(job["framework"])
                if worker is None:
                    for i, _ in [(index, job)] + queue.drop_framework(job["framework"]):
                        finish(i, {"status": status, "error": error})
                    continue
            try:
                finish(index, worker.run(job, self.timeout))
            except WorkerDied as err:
                finish(index, {"status": "failed", "error": str(err)})
                worker.kill()
                worker = None
        if worker is not None:
            with self.lock:
                self.idle.append(worker)

    def _idle_or_start(self, framework):
        with self.lock:
            for worker in self.idle:
                if worker.framework == framework:
                    self.idle.remove(worker)
                    return worker, None, None
        return self._start(framework)

    def _start(self, framework):
        """-> (worker, None, None); or (None, "skipped", why) when the framework cannot be
        imported, (None, "failed", why) when its worker crashes while starting."""
        try:
            worker = WorkerProcess(framework, self.threads)
        except WorkerDied as err:
            return None, "failed", f"worker could not start: {err}"
        if not worker.hello.get("ok"):
            worker.close()
            return None, "skipped", worker.hello.get("error", "import failed")
        self.hellos[framework] = worker.hello
        return worker, None, None

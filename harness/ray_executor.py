"""`--executor ray`: the same jobs on a Ray cluster (or a local Ray instance).

Each Ray actor is a pool slot: it starts the very same `python -m harness.worker`
process the local executor starts, with the same pinned threads, so a job's
result does not depend on which executor or which machine of one kind ran it.
The driver feeds the actors from the same queue as the local pool.
"""
import threading

from .executor import JobQueue, WorkerDied, WorkerProcess


class _Slot:
    """Lives in a Ray worker process; keeps one framework worker alive between jobs."""

    def __init__(self, threads, timeout):
        self.threads, self.timeout, self.worker = threads, timeout, None

    def run(self, job):
        if self.worker is not None and self.worker.framework != job["framework"]:
            self.worker.close()
            self.worker = None
        if self.worker is None:
            try:
                self.worker = WorkerProcess(job["framework"], self.threads)
            except WorkerDied as err:
                return {"status": "failed", "error": f"worker could not start: {err}"}
            if not self.worker.hello.get("ok"):
                hello, self.worker = self.worker.hello, None
                return {"status": "skipped", "error": hello.get("error")}
        try:
            return self.worker.run(job, self.timeout)
        except WorkerDied as err:
            self.worker.kill()
            self.worker = None
            return {"status": "failed", "error": str(err)}

    def close(self):
        if self.worker is not None:
            self.worker.close()


class RayExecutor:
    name = "ray"

    def __init__(self, address=None, workers=None, threads=1, timeout=None):
        import ray
        self.ray = ray
        if not ray.is_initialized():
            options = {"address": address} if address else {"num_cpus": workers}
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     configure_logging=False, **options)
        self.workers = workers or int(ray.cluster_resources().get("CPU", 1))
        self.threads, self.timeout = threads, timeout
        self.slot_class = ray.remote(num_cpus=1)(_Slot)
        self.slots, self.hellos = [], {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for slot in self.slots:
            try:
                self.ray.get(slot.close.remote())
            except Exception:  # a dead actor has nothing left to close
                pass
        self.slots = []

    def run(self, jobs, on_result=None):
        results = [None] * len(jobs)
        queue = JobQueue(jobs)
        while len(self.slots) < min(self.workers, max(1, len(jobs))):
            self.slots.append(self.slot_class.remote(self.threads, self.timeout))

        def drive(n):
            framework = None
            while (taken := queue.take(n, framework)) is not None:
                index, job = taken
                framework = job["framework"]
                try:
                    result = self.ray.get(self.slots[n].run.remote(job))
                except self.ray.exceptions.RayActorError as err:
                    result = {"status": "failed", "error": f"Ray actor died: {err}"}
                    self.slots[n] = self.slot_class.remote(self.threads, self.timeout)
                    framework = None
                results[index] = result
                if on_result:
                    on_result(job, result)

        threads = [threading.Thread(target=drive, args=(n,)) for n in range(len(self.slots))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

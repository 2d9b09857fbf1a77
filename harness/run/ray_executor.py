"""`--executor ray`: the same jobs on a Ray cluster (or a local Ray instance).

Each Ray actor holds one `Slot`, the very class the local pool runs in its threads: it
starts the same `python -m crossgrad.harness.run.worker` process with the same pinned
threads, so a job's result does not depend on which executor or which machine of one
kind ran it. The driver feeds the actors with the same `drive` loop as the local pool,
and records the workers' hellos the same way.
"""
from .executor import Slot, drive


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
        self.slot_class = ray.remote(num_cpus=1)(Slot)
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
        while len(self.slots) < min(self.workers, max(1, len(jobs))):
            self.slots.append(self.slot_class.remote(self.threads, self.timeout))
        results, hellos = drive(jobs, len(self.slots), self._run_on, on_result)
        self.hellos.update(hellos)
        return results

    def _run_on(self, n, job):
        try:
            return self.ray.get(self.slots[n].run.remote(job))
        except self.ray.exceptions.RayActorError as err:
            self.slots[n] = self.slot_class.remote(self.threads, self.timeout)
            return {"status": "failed", "error": f"Ray actor died: {err}"}, None, False

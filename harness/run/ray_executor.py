"""`--executor ray`: the same jobs on a Ray cluster (or a Ray instance of its own).

Each Ray actor holds one `Slot`, the very class the local pool runs in its threads: it
starts the same `python -m crossgrad.harness.run.worker` process with the same pinned
threads, so a job's result does not depend on which executor or which machine of one
kind ran it. The driver feeds the actors with the same `Service` as the local pool,
and records the workers' hellos the same way (they go into the manifest).

Without an address crossgrad starts a Ray instance of its own (`address="local"`) and
stops it at the end; it never joins whatever cluster a machine-wide file last named.
With an address it joins that cluster as a client. Ray 2.60 clusters started with a
token refuse clients without it; an explicit address does not switch Ray's client to
token mode by itself, so crossgrad does, as Ray does for `address="auto"`, when
RAY_AUTH_MODE is unset and a token is at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token). A cluster that cannot be reached or refuses is one line, exit 2.
"""
import contextlib
import logging
import os
import socket
import sys
import tempfile

from ..errors import InputError
from .executor import Service, Serviced, Slot

CONNECT_SECONDS = 10
QUIET = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             configure_logging=False)


class RayExecutor(Serviced):
    name = "ray"

    def __init__(self, address=None, workers=None, threads=1, timeout=None, compile_cache=True):
        import ray
        self.ray, self.started = ray, False
        if not ray.is_initialized():
            connect(ray, address, workers)
            self.started = True
        self.workers = workers or int(ray.cluster_resources().get("CPU", 1))
        self.threads, self.timeout, self.compile_cache = threads, timeout, compile_cache
        self.slot_class = ray.remote(num_cpus=1)(Slot)
        self.slots = {}  # n -> the actor of slot n, made at its first job
        self.service = Service(self.workers, self._run_on)

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for slot in self.slots.values():
            try:
                self.ray.get(slot.close.remote())
            except Exception:  # a dead actor has nothing left to close
                pass
        self.slots = {}
        if self.started:  # the instance (or connection) this executor made ends with it
            self.ray.shutdown()
            self.started = False

    def run(self, jobs, on_result=None, priority=0):
        return self.service.run(jobs, on_result, priority)

    def _new_slot(self):
        """An actor holding a Slot; its JAX workers use the compilation cache of the machine
        the actor runs on (compile_cache.py), unless `compile_cache` is False."""
        return self.slot_class.remote(self.threads, self.timeout, compile_cache=self.compile_cache)

    def _run_on(self, n, job):
        if n not in self.slots:  # only slot n's thread makes or replaces slot n's actor
            self.slots[n] = self._new_slot()
        try:
            return self.ray.get(self.slots[n].run.remote(job))
        except self.ray.exceptions.RayActorError as err:
            self.slots[n] = self._new_slot()
            return {"status": "failed", "error": f"Ray actor died: {err}"}, None, False


def connect(ray, address, workers):
    """Start a Ray instance of our own, or join the cluster at `address`; InputError if that
    cluster cannot be reached or refuses us."""
    if not address:
        with _python_logs_quiet():  # fd 2 stays: the instance's processes inherit it
            ray.init(address="local", num_cpus=workers, **QUIET)
        return
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        raise InputError("--ray-address", address, f"no Ray cluster answers there "
                                                   f"({err.strerror or err})") from None
    with _python_logs_quiet(), _stderr_captured() as said:
        _token_mode_if_at_hand()
        try:
            ray.init(address=address, **QUIET)
        except Exception as err:
            raise InputError("--ray-address", address, _why_refused(err, said())) from None


def _host_port(address):
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError("--ray-address", address, "expected HOST:PORT, e.g. 127.0.0.1:6379")
    return host.strip("[]"), int(port)


def _token_mode_if_at_hand():
    """What Ray does for address="auto": token mode when RAY_AUTH_MODE is unset and a token
    is at hand. It must also reach Ray's already loaded configuration, hence Ray's own call."""
    try:
        from ray._private.authentication.authentication_token_setup import \
            maybe_enable_token_auth_if_token_available
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _why_refused(err, stderr_text):
    if "Unauthenticated" in stderr_text or "InvalidAuthToken" in stderr_text \
            or type(err).__name__ == "AuthenticationError":
        return ("the cluster refused this client's authentication token; give it the "
                "cluster's token (RAY_AUTH_TOKEN_PATH, RAY_AUTH_TOKEN or ~/.ray/auth_token) "
                "and RAY_AUTH_MODE=token")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"could not join the Ray cluster: {first}"


@contextlib.contextmanager
def _python_logs_quiet():
    """Ray's notices while it starts (token mode, usage stats) are not the user's business."""
    logger = logging.getLogger("ray")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _stderr_captured():
    """Ray's C++ core writes its connection retries straight to file descriptor 2; hold them
    back, so that a refusal is one line. Yields a function returning what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield lambda: (held.seek(0), held.read().decode(errors="replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)

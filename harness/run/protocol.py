"""Messages between the harness and a worker: pickles with an 8-byte length in front."""
import os
import pickle
import select
import struct
import time

HEADER = struct.Struct(">Q")


class Closed(Exception):
    """The other end went away (the worker died, or the harness did)."""


class TimedOut(Exception):
    pass


def send(stream, obj):
    body = pickle.dumps(obj, protocol=5)
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


def recv(stream):
    """Blocking read of one message; None at a clean end of stream."""
    head = stream.read(HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise Closed("truncated message header")
    (size,) = HEADER.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        raise Closed("truncated message")
    return pickle.loads(body)


def recv_fd(fd, deadline=None):
    """Read one message from a raw pipe fd, giving up at `deadline` (time.monotonic())."""
    head = _read_exact(fd, HEADER.size, deadline)
    (size,) = HEADER.unpack(head)
    return pickle.loads(_read_exact(fd, size, deadline))


def _read_exact(fd, n, deadline):
    chunks, got = [], 0
    while got < n:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            raise TimedOut()
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise Closed("end of stream")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)

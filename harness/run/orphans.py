"""Processes the harness starts end with it, even when it is killed with SIGKILL and can
stop nothing: its workers, and the report's drawing processes."""
import os
import threading
import time


def stop_with(parent, cleanup=None):
    """Exit (status 4) once `parent` is gone, after `cleanup()`: a daemon thread watches, while
    the process's own work goes on (a worker in the middle of a job would otherwise never
    read its closed stdin; a drawing process would wait forever on pipes its sisters hold).
    `parent` is the harness's pid as the harness gave it: one killed while this process was
    still starting is gone before the process could ask for its parent."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        if cleanup is not None:
            cleanup()
        os._exit(4)
    threading.Thread(target=watch, daemon=True).start()

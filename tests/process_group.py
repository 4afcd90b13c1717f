"""Processes a test starts (workers of a cluster, JAX processes), each with
its log file, killed whatever happens when the test ends."""

import time


class ProcessGroup:
    """A context manager: leaving it kills every process still running.

    Example (a fixture):

        with ProcessGroup() as group:
            yield group
    """

    def __init__(self):
        self.processes = []

    def add(self, process, log_path):
        """Tracks `process`, whose output goes to `log_path`; returns it."""
        process.log_path = str(log_path)
        self.processes.append(process)
        return process

    def wait(self, processes, timeout=240):
        """Waits for `processes` (all within `timeout` s); their return codes."""
        deadline = time.monotonic() + timeout
        for process in processes:
            process.wait(timeout=max(1, deadline - time.monotonic()))
        return [p.returncode for p in processes]

    def log(self, process, tail=None):
        """The process' output so far (its last `tail` characters)."""
        with open(process.log_path) as f:
            text = f.read()
        return text if tail is None else text[-tail:]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.kill_all()

    def kill_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

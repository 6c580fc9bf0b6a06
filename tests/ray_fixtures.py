"""A local Ray cluster for the Ray tests: started once per test session (2 CPUs, no dashboard) on first use,
shut down at the end; and a way to kill one of its worker processes from outside, as a crash would."""

from __future__ import annotations

import os

import pytest

try:
    import psutil
    import pyarrow  # noqa: F401
    import ray
except ImportError as e:  # a missing test dependency fails, never skips
    pytest.fail(f"the ray extra is not installed ({e}): pip install -e '.[test]'", pytrace=False)


@pytest.fixture(scope="session")
def ray_cluster():
    from bombus.serving.ray import connect

    if ray.is_initialized():
        ray.shutdown()
    # Ray lowers its workers' priority (niceness 15): on a machine busy with other work they would crawl.
    os.environ.setdefault("RAY_worker_niceness", "0")
    connect("local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def workers(prefix: str) -> list[psutil.Process]:
    """The live processes of this test's own Ray cluster (descendants of this process) whose title starts with
    `prefix` (e.g. "ray::MapWorker")."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if " ".join(process.cmdline()).startswith(prefix) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def kill_worker(prefix: str) -> int | None:
    """SIGKILL one of `workers(prefix)`, as a crash would; its pid, or None when there is none."""
    for process in workers(prefix):
        process.kill()
        return process.pid
    return None

"""One Ray cluster for all integration tests, so each test pays only for its own actors."""

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Logical CPUs: every actor asks for one; on a 2-core machine they time-share.
    ray.init(num_cpus=8, include_dashboard=False)
    yield
    ray.shutdown()

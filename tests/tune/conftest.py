"""A real local Ray (2 CPUs) shared by the tune tests that need it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray
    import ray.cloudpickle

    import tests.tune.toy

    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.cloudpickle.register_pickle_by_value(tests.tune.toy)  # Ray workers need not import tests/
    if ray.is_initialized():  # another test package's session started it
        yield
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()

"""Test-wide settings.

`make test` runs two pytest workers on a 2-core machine; one torch thread per worker
avoids oversubscription, which made the suite ~10x slower under load.

Hypothesis profiles: ``ci`` (the default) derandomizes every ``@given`` test and keeps
no example database, so a run draws the same examples on every machine and cannot
flake; ``fuzz`` draws fresh random examples, ten times as many, for hunting new
failures (``make fuzz``, or ``HYPOTHESIS_PROFILE=fuzz pytest ...``). A test that sets its
own ``max_examples`` scales it with the profile: ``settings.default.max_examples // 2``. A failure found
by fuzzing is pinned with ``@example(...)`` on the test, so CI keeps checking it.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile("ci", derandomize=True, database=None, max_examples=100, print_blob=True)
settings.register_profile(
    "fuzz", derandomize=False, database=None, max_examples=1000, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def attnkit_cache_dir(tmp_path_factory):
    """Model conversions go to a test-only cache, never to the user's ~/.cache/attnkit.

    The folder sits beside pytest's numbered temp folders (``/tmp/pytest-of-USER/attnkit-cache``),
    so it survives between runs (SmolLM2 converts once, ~30 s) and is shared by xdist workers
    (entries are written atomically). ``ATTNKIT_TEST_CACHE_DIR`` chooses another folder.
    """
    base = tmp_path_factory.getbasetemp()
    shared = next((p for p in base.parents if p.name.startswith("pytest-of-")), base.parent)  # above xdist's popen-gwN
    root = os.environ.get("ATTNKIT_TEST_CACHE_DIR") or str(shared / "attnkit-cache")
    previous = os.environ.get("ATTNKIT_CACHE_DIR")
    os.environ["ATTNKIT_CACHE_DIR"] = root
    yield root
    if previous is None:
        os.environ.pop("ATTNKIT_CACHE_DIR", None)
    else:
        os.environ["ATTNKIT_CACHE_DIR"] = previous

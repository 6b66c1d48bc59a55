"""Test-wide settings.

`make test` runs two pytest workers on a 2-core machine; one torch thread per worker
avoids oversubscription, which made the suite ~10x slower under load.
"""

import os

import pytest
import torch

torch.set_num_threads(1)


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

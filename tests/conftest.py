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

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile("ci", derandomize=True, database=None, max_examples=100, print_blob=True)
settings.register_profile(
    "fuzz", derandomize=False, database=None, max_examples=1000, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

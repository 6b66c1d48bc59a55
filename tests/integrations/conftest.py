"""Settings for the integration tests."""

import pytest
import torch._inductor.config


@pytest.fixture(autouse=True)
def inductor_compiles_in_this_process():
    """Inductor compiles its C++ kernels here, not in a pool of worker processes: on the 2-core machine
    shared by two pytest workers the pool's start-up cost more than the compiles (36 s vs 10 s measured)."""
    with torch._inductor.config.patch(compile_threads=1):
        yield

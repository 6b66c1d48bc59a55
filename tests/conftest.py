"""Test-wide settings.

`make test` runs two pytest workers on a 2-core machine; one torch thread per worker
avoids oversubscription, which made the suite ~10x slower under load.
"""

import torch

torch.set_num_threads(1)

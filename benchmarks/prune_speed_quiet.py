"""Re-time `forward_speedup` for benchmarks/results/lab/pruning on a quiet machine: same shapes, same importance order.

The weights are a seeded random initialization (time depends on shapes only) and the batches are 5 x 64 random
sentences of 14 source and 17 target tokens (about the length of the numbers-dates validation pairs).
Run: PYTHONPATH=src python benchmarks/prune_speed_quiet.py 15
"""
import json
import sys

import torch

from attnkit.lab.importance import pruning_order
from attnkit.lab.pruning import forward_speedup
from attnkit.nn import Transformer, TransformerConfig

torch.set_num_threads(1)
torch.manual_seed(0)
doc = json.load(open("benchmarks/results/lab/pruning/results.json"))
cfg = {k: v for k, v in doc["model"].items() if k != "heads_total"}
model = Transformer(TransformerConfig(**cfg)).eval()
order = pruning_order({k: torch.tensor(v) for k, v in doc["importance"].items()})
fractions = [r["fraction"] for r in doc["forward_speed"]]
g = torch.Generator().manual_seed(0)
V = cfg["vocab_size"]
batches = [(torch.randint(3, V, (64, 14), generator=g), torch.randint(3, V, (64, 17), generator=g)) for _ in range(5)]
rows = forward_speedup(model, order, fractions, batches, repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 15)
print(json.dumps(rows))

"""``embodied train``: train the PaLM-E-style planner on demonstration shards.

    embodied train data=data/l1 out=runs/model [model=tiny] [steps=2000] [batch_size=32] ...
    torchrun --nproc_per_node=2 -m embodied.commands.train data=data/l1 out=runs/model

The loop itself is ``embodied.model.training.train`` (schema: ``TrainConfig``).
"""

from __future__ import annotations

import sys

from embodied.commands.config import compose, validated
from embodied.core.errors import ConfigError
from embodied.model.training import TrainConfig, train


def main(cfg) -> int:
    train(validated(cfg, TrainConfig))
    return 0


if __name__ == "__main__":  # torchrun's way in
    try:
        sys.exit(main(compose("train", sys.argv[1:])))
    except ConfigError as e:
        print(f"embodied train: error: {e}", file=sys.stderr)
        sys.exit(2)

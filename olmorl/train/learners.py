"""The learner ranks of one job as a group: started on Ray, called together, saved together.

Every verb of `LearnerWorker` that runs a forward pass is a collective, so the group always calls
all ranks at once and waits for all of them.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
import torch

from olmorl.config import AlgorithmConfig, LearnerConfig, ModelConfig
from olmorl.learner.worker import LearnerWorker
from olmorl.train.checkpoints import TRAIN_STATE_DIR


class LearnerGroup:
    def __init__(
        self,
        model: ModelConfig,
        learner: LearnerConfig,
        seed: int,
        total_steps: int,
        algo: AlgorithmConfig | None = None,
        temperature: float = 1.0,
    ):
        gpu = 1 if torch.cuda.is_available() else 0
        world = learner.num_workers
        self.actors = [
            ray.remote(LearnerWorker)
            .options(num_cpus=1, num_gpus=gpu)
            .remote(rank, world, model, learner, algo, temperature)
            for rank in range(world)
        ]
        self._setup = (model, learner, seed, total_steps)

    def start(self) -> list[ray.ObjectRef]:
        """Refs of every rank's setup (the caller may start other actors meanwhile)."""
        _, _, seed, total_steps = self._setup
        address, port = ray.get(self.actors[0].address.remote())
        return [a.setup.remote(address, port, seed, total_steps) for a in self.actors]

    @property
    def world_size(self) -> int:
        return len(self.actors)

    def each(self, verb: str, per_rank_args: Sequence[tuple]) -> list[Any]:
        """`verb(*per_rank_args[rank])` on every rank; the ranks' results in rank order."""
        return ray.get(
            [
                getattr(actor, verb).remote(*args)
                for actor, args in zip(self.actors, per_rank_args, strict=True)
            ]
        )

    def all(self, verb: str, *args: Any) -> list[Any]:
        """`verb(*args)` on every rank."""
        return self.each(verb, [args] * self.world_size)

    def save(self, directory: Path) -> None:
        """The Hugging Face model (rank 0) and every rank's training state into `directory`."""
        self.all("save_train_state", directory / TRAIN_STATE_DIR)
        self.all("save_checkpoint", directory, False)

    def load(self, directory: Path) -> int:
        """Restores the training state `save` wrote; returns the optimizer steps it had taken."""
        return self.all("load_train_state", directory / TRAIN_STATE_DIR)[0]

    def shutdown(self) -> None:
        ray.get([a.shutdown.remote() for a in self.actors])
        for actor in self.actors:
            ray.kill(actor)


def sum_over_ranks(per_rank: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Metric shares summed over ranks (each rank reports its part of the step mean)."""
    totals: dict[str, float] = {}
    for metrics in per_rank:
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value
    return totals

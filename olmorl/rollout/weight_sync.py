"""Sends the learner's full weights to every rollout actor, one bucket per round trip.

Each bucket is serialised once and put in Ray's object store once; all actors fetch it
concurrently, so the cost is one RPC per bucket per actor, not one per tensor.
"""

import ray
from safetensors.torch import save
from torch import Tensor


class RayWeightSink:
    """The `WeightSink` the learner's rank 0 pushes to; holds the rollout actors' handles."""

    def __init__(self, rollout_actors: list, mode: str = "inflight"):
        self.actors, self.mode = rollout_actors, mode
        self._open = False

    def send(self, bucket: dict[str, Tensor], version: int, last: bool) -> None:
        if not self._open:
            ray.get([a.begin_weight_update.remote(self.mode) for a in self.actors])
            self._open = True
        blob = ray.put(save(bucket))
        ray.get([a.receive_weights.remote(blob) for a in self.actors])
        if last:
            ray.get([a.finish_weight_update.remote(version) for a in self.actors])
            self._open = False

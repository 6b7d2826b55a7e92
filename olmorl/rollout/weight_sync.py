"""Sends the learner's full weights to every rollout actor, one bucket per round trip.

Each bucket is serialised once and put in Ray's object store once; all actors fetch it
concurrently, so the cost is one RPC per bucket per actor, not one per tensor.
"""

import ray
from ray.exceptions import RayActorError
from safetensors.torch import save
from torch import Tensor


class RayWeightSink:
    """The `WeightSink` the learner's rank 0 pushes to; holds the rollout actors' handles."""

    def __init__(self, rollout_actors: list, mode: str = "inflight"):
        self.actors, self.mode = rollout_actors, mode
        self._open = False

    def send(self, bucket: dict[str, Tensor], version: int, last: bool) -> None:
        if not self._open:
            self._on_every_actor(lambda a: a.begin_weight_update.remote(self.mode))
            self._open = True
        blob = ray.put(save(bucket))
        self._on_every_actor(lambda a: a.receive_weights.remote(blob))
        if last:
            self._on_every_actor(lambda a: a.finish_weight_update.remote(version))
            self._open = False

    def _on_every_actor(self, call) -> None:
        """Runs `call` on every actor concurrently; an actor that died is left out of the rest
        of the push (its requests fail too, and the rollout producer has it replaced)."""
        refs = [(actor, call(actor)) for actor in self.actors]
        for actor, ref in refs:
            try:
                ray.get(ref)
            except RayActorError:
                self.actors.remove(actor)

"""Sends the learner's full weights to every rollout engine, one bucket at a time.

Two transports behind one `WeightSink` (`rollout.weight_transfer`):
- `broadcast` (default): learner rank 0 and every engine worker form one process group (gloo on
  CPU, NCCL on GPU); each bucket is packed into one buffer and broadcast once, so all engines
  receive it concurrently with one collective per bucket;
- `file`: each bucket is serialised once, put in Ray's object store once and written to /dev/shm
  by every engine; it needs no direct connection between learner and engines.
Either way the engines pause around the push (`begin_weight_update`, `finish_weight_update`).
"""

import ray
import torch
from ray.exceptions import GetTimeoutError, RayActorError
from safetensors.torch import save
from torch import Tensor

from olmorl.rollout.buckets import pack_bucket
from olmorl.rollout.transfer_group import (
    TransferGroupInfo,
    broadcast_from_root,
    new_group,
    open_store,
)


class _EngineSink:
    """What both transports share: the pause around a push, and engines that die meanwhile."""

    device = "cpu"
    """Where the learner should put the full tensors it sends."""

    def __init__(self, rollout_actors: list, mode: str = "inflight"):
        self.actors, self.mode = list(rollout_actors), mode
        self._open = False

    def send(self, bucket: dict[str, Tensor], version: int, last: bool) -> None:
        if not self._open:
            self._on_every_actor(lambda a: a.begin_weight_update.remote(self.mode))
            self._open = True
        self._send_bucket(bucket)
        if last:
            self._flush()
            self._on_every_actor(lambda a: a.finish_weight_update.remote(version))
            self._open = False

    def _send_bucket(self, bucket: dict[str, Tensor]) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        """Waits until every bucket sent is loaded."""

    def _on_every_actor(self, call) -> None:
        """Runs `call` on every actor concurrently; an actor that died is left out of the rest
        of the push (its requests fail too, and the rollout producer has it replaced)."""
        refs = [(actor, call(actor)) for actor in self.actors]
        for actor, ref in refs:
            try:
                ray.get(ref)
            except RayActorError:
                self.actors.remove(actor)


class FileWeightSink(_EngineSink):
    def _send_bucket(self, bucket: dict[str, Tensor]) -> None:
        blob = ray.put(save(bucket))
        self._on_every_actor(lambda a: a.receive_weights.remote(blob))


class WeightPushFailed(RuntimeError):
    """A broadcast failed part-way: some engine died or stopped answering during it."""


# Groups this process (learner rank 0) is the root of, by engine set: a set that stays the same
# keeps its group from push to push; an engine lost or replaced makes a new set and a new group.
_GROUPS: dict[tuple[str, ...], tuple] = {}


class BroadcastWeightSink(_EngineSink):
    def __init__(
        self,
        rollout_actors: list,
        mode: str = "inflight",
        tensor_parallel_size: int = 1,
        timeout_s: float = 600.0,
    ):
        super().__init__(rollout_actors, mode)
        self.tensor_parallel_size, self.timeout_s = tensor_parallel_size, timeout_s
        self._loading: list[ray.ObjectRef] = []  # the engines still loading the last bucket

    @property
    def device(self) -> str:
        # Asked in learner rank 0's process, which may have a GPU that the driver lacks.
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _send_bucket(self, bucket: dict[str, Tensor]) -> None:
        # The engines load a bucket after receiving it; meanwhile the learners gather and pack
        # the next one, and only its broadcast waits for them.
        buffer, layout = pack_bucket(bucket, self.device)
        self._flush()
        group, name = self._group()
        refs = [a.receive_broadcast.remote(layout.as_dict(), name) for a in self.actors]
        try:
            broadcast_from_root(group, buffer)
        except RuntimeError as e:
            self._failed(e)
        self._loading = refs

    def _flush(self) -> None:
        refs, self._loading = self._loading, []
        try:
            ray.get(refs, timeout=self.timeout_s)
        except (RuntimeError, RayActorError, GetTimeoutError) as e:
            self._failed(e)

    def _failed(self, error: Exception):
        _GROUPS.pop(self._key(), None)
        raise WeightPushFailed(
            f"weight broadcast to {len(self.actors)} rollout engine(s) failed "
            f"({type(error).__name__}: {error}); set rollout.weight_transfer=file to ride out "
            "engines that die during a push"
        ) from error

    def _key(self) -> tuple[str, ...]:
        return tuple(actor._actor_id.hex() for actor in self.actors)

    def _group(self):
        """The group over the current engines, formed on first use (engines that no longer
        answer are left out first, so the rendezvous never waits for a dead one)."""
        if self._key() not in _GROUPS:
            self._on_every_actor(lambda a: a.ping.remote())
            _GROUPS.clear()  # at most one group: the engines hold only their newest
            _GROUPS[self._key()] = self._form_group()
        group, name, _store = _GROUPS[self._key()]
        return group, name

    def _form_group(self) -> tuple:
        tp = self.tensor_parallel_size
        world = 1 + tp * len(self.actors)
        host = ray.util.get_node_ip_address()
        store = open_store(host, world, self.timeout_s)
        name = "weights-" + "-".join(key[:8] for key in self._key())
        infos = [
            TransferGroupInfo(host, store.port, name, 1 + i * tp, world, self.timeout_s)
            for i in range(len(self.actors))
        ]
        joins = [a.join_weight_group.remote(info.as_dict()) for a, info in zip(self.actors, infos)]
        group = new_group(store, name, 0, world, torch.device(self.device), self.timeout_s)
        ray.get(joins)
        return group, name, store


def build_weight_sink(
    transfer: str, rollout_actors: list, mode: str, tensor_parallel_size: int, timeout_s: float
) -> _EngineSink:
    """The sink for `rollout.weight_transfer` over these engines."""
    if transfer == "file":
        return FileWeightSink(rollout_actors, mode)
    return BroadcastWeightSink(rollout_actors, mode, tensor_parallel_size, timeout_s)

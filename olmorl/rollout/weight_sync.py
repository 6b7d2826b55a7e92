"""Sends the learner's full weights to every rollout engine, one bucket at a time.

Two transports behind one `WeightSink` (`rollout.weight_transfer`):
- `broadcast` (default): learner rank 0 and every engine worker form one process group (gloo on
  CPU, NCCL on GPU); each bucket is packed into one buffer and broadcast once, so all engines
  receive it concurrently with one collective per bucket;
- `file`: each bucket is serialised once, put in Ray's object store once and written to /dev/shm
  by every engine; it needs no direct connection between learner and engines.
Either way the engines pause around the push (`begin_weight_update`, `finish_weight_update`).
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import ray
import torch
from ray.exceptions import RayActorError, RayError
from safetensors.torch import save
from torch import Tensor

from olmorl.rendezvous import open_store
from olmorl.rollout.buckets import pack_bucket
from olmorl.rollout.transfer_group import (
    TransferGroupInfo,
    abort_group,
    backend_for,
    broadcast_from_root,
    close_group,
    new_group,
    wait_watching,
)


class _EngineSink:
    """What both transports share: the pause around a push, and engines found dead."""

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

    def _on_every_actor(self, call, results: dict | None = None) -> None:
        """Runs `call` on every actor concurrently (their answers into `results`, by actor); an
        actor found dead is left out from then on (its requests fail too, and the rollout
        producer has it replaced). Only the file transport rides out a death mid-bucket."""
        refs = [(actor, call(actor)) for actor in self.actors]
        for actor, ref in refs:
            try:
                answer = ray.get(ref)
            except RayActorError:
                self.actors.remove(actor)
                continue
            if results is not None:
                results[actor] = answer


class FileWeightSink(_EngineSink):
    def _send_bucket(self, bucket: dict[str, Tensor]) -> None:
        blob = ray.put(save(bucket))
        self._on_every_actor(lambda a: a.receive_weights.remote(blob))


class WeightPushFailed(RuntimeError):
    """A broadcast failed part-way: some engine died, refused a bucket or stopped answering."""


# The group this process (learner rank 0) is the root of, by engine set: a set that stays the
# same, with every engine still in it, keeps its group from push to push.
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
        self._current: tuple | None = None  # this push's group and its name

    @property
    def device(self) -> str:
        # Asked in learner rank 0's process, which may have a GPU that the driver lacks.
        return "cuda" if torch.cuda.is_available() else "cpu"

    def send(self, bucket: dict[str, Tensor], version: int, last: bool) -> None:
        super().send(bucket, version, last)
        if last:
            self._current = None  # the next push checks the engines' groups again

    def _send_bucket(self, bucket: dict[str, Tensor]) -> None:
        # The engines load a bucket after receiving it; meanwhile the learners gather and pack
        # the next one, and only its broadcast waits for them.
        buffer, layout = pack_bucket(bucket, self.device)
        self._flush()
        if self._current is None:
            self._current = self._group()
        group, name = self._current
        refs = [a.receive_broadcast.remote(layout.as_dict(), name) for a in self.actors]
        try:
            broadcast_from_root(group, buffer, check_peers=lambda: _raise_failed(refs))
        except (RuntimeError, RayError) as e:
            self._failed(e)
        self._loading = refs

    def _flush(self) -> None:
        refs, self._loading = self._loading, []
        if not refs:
            return
        try:
            ray.get(refs, timeout=self.timeout_s)
        except (RuntimeError, RayError) as e:
            self._failed(e)

    def _failed(self, error: Exception):
        # The group is unusable now (a peer is gone or stuck): it is aborted, since a shutdown
        # could wait on the broken collective, and dropped whatever its key (a dead engine may
        # already have left this sink's actor set). The next push forms a new one.
        groups = {id(entry[0]): entry[0] for entry in _GROUPS.values()}
        if self._current is not None:
            groups[id(self._current[0])] = self._current[0]
        _GROUPS.clear()
        self._current = None
        for group in groups.values():
            abort_group(group)
        raise WeightPushFailed(
            f"weight broadcast to {len(self.actors)} rollout engine(s) failed "
            f"({type(error).__name__}: {error}); set rollout.weight_transfer=file to ride out "
            "engines that die during a push"
        ) from error

    def _key(self) -> tuple[str, ...]:
        return tuple(actor._actor_id.hex() for actor in self.actors)

    def _group(self) -> tuple:
        """The group over the current engines and its name. It is formed anew when the engine
        set changed or an engine has since joined another group; engines that no longer
        answer are left out first, so the rendezvous never waits for a dead one."""
        joined = {}
        self._on_every_actor(lambda a: a.weight_group.remote(), joined)
        cached = _GROUPS.get(self._key())
        if cached is None or any(name != cached[1] for name in joined.values()):
            for group, *_ in _GROUPS.values():
                close_group(group)
            _GROUPS.clear()  # engines hold only their newest group
            try:
                _GROUPS[self._key()] = cached = self._form_group()
            except (RuntimeError, RayError) as e:
                self._failed(e)
        return cached[0], cached[1]

    def _form_group(self) -> tuple:
        tp = self.tensor_parallel_size
        world = 1 + tp * len(self.actors)
        device = torch.device(self.device)
        if device.type == "cuda":
            # Fixed here: the warm-up runs in another thread, whose current device may differ,
            # and NCCL would connect again lazily for the buckets' device at the first push.
            device = torch.device("cuda", torch.cuda.current_device())
        host = ray.util.get_node_ip_address()
        store = open_store(world, self.timeout_s)
        name = f"weights-{uuid.uuid4().hex[:12]}"
        infos = [
            TransferGroupInfo(
                host, store.port, name, backend_for(device), 1 + i * tp, world, self.timeout_s
            )
            for i in range(len(self.actors))
        ]
        joins = [a.join_weight_group.remote(info.as_dict()) for a, info in zip(self.actors, infos)]
        # The root's rendezvous (and the group's warm-up broadcast) runs beside the engines'
        # joins, so that an engine that fails to join (unreachable store, wrong backend) is
        # reported at once, not at the timeout; the deadline ends a wait that nothing ends
        # (NCCL's connect blocks without a timeout of its own while a member is missing).
        deadline = time.monotonic() + self.timeout_s

        def check_joins() -> None:
            _raise_failed(joins)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"weight group {name!r} was not formed within {self.timeout_s:g} s: an "
                    "engine never joined or cannot reach the learner"
                )

        pool = ThreadPoolExecutor(max_workers=1)
        try:
            forming = pool.submit(new_group, store, name, 0, world, device, self.timeout_s)
            wait_watching(forming.done, check_joins)
            group = forming.result()
        finally:
            pool.shutdown(wait=False)  # a rendezvous left waiting ends at its own timeout
        ray.get(joins, timeout=self.timeout_s)
        return group, name, store


def _raise_failed(refs: list[ray.ObjectRef]) -> None:
    """Raises the error of any of `refs` that has already failed."""
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    ray.get(done)


def build_weight_sink(
    transfer: str, rollout_actors: list, mode: str, tensor_parallel_size: int, timeout_s: float
) -> _EngineSink:
    """The sink for `rollout.weight_transfer` over these engines."""
    if transfer == "file":
        return FileWeightSink(rollout_actors, mode)
    return BroadcastWeightSink(rollout_actors, mode, tensor_parallel_size, timeout_s)

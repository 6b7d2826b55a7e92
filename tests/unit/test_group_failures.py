"""Process groups fail the same way on gloo as on NCCL: bounded, early, and torn down.

The learners' group gets run.stage_timeout_s (torch's defaults differ: NCCL 10 min, gloo 30); a
weight group carries one broadcast before it is handed out (NCCL connects lazily, so a bad
rendezvous would otherwise surface at the first push); a push that fails aborts its group, once,
on the root and on the engine. Real gloo where a group of one suffices, fake groups elsewhere.
"""

import re
import threading
import time
import types
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from olmorl.config import LearnerConfig, ModelConfig
from olmorl.learner.worker import LearnerWorker, collective_timeout_s
from olmorl.rollout import transfer_group, weight_sync


def test_the_learner_group_gets_the_stage_timeout(tiny_model_dir: Path):
    worker = LearnerWorker(0, 1, ModelConfig(path=str(tiny_model_dir)), LearnerConfig())
    worker.setup(*worker.address(), seed=0, timeout_s=123)
    try:
        group = dist.distributed_c10d._get_default_group()
        backend = group._get_backend(torch.device("cpu"))
        # The driver's stage deadline comes first; the collective's is a backstop after it.
        assert (
            backend.options._timeout
            == timedelta(seconds=collective_timeout_s(123))
            > timedelta(seconds=123)
        )
        # The store too: NCCL fetches each new communicator's id through it.
        assert worker.rendezvous.timeout == timedelta(seconds=collective_timeout_s(123))
    finally:
        worker.shutdown()


def test_rank_0_opens_the_rendezvous_before_joining(tiny_model_dir: Path):
    worker = LearnerWorker(0, 1, ModelConfig(path=str(tiny_model_dir)), LearnerConfig())
    with pytest.raises(RuntimeError, match="call `address` before `setup`"):
        worker.setup("127.0.0.1", 1, seed=0)


def test_the_learner_group_passes_run_stage_timeout_to_every_rank(monkeypatch):
    from olmorl.train import learners

    class FakeMethod:
        def __init__(self, calls: list, result=None):
            self.calls, self.result = calls, result

        def remote(self, *args, **kwargs):
            self.calls.append((args, kwargs))
            return self.result

    class FakeRank:
        def __init__(self):
            self.calls: list = []
            self.address = FakeMethod([], "address-ref")
            self.setup = FakeMethod(self.calls)

    group = learners.LearnerGroup.__new__(learners.LearnerGroup)
    group.actors = [FakeRank(), FakeRank()]
    group.stage_timeout_s = 77.0
    group._setup = (None, None, 0, 10)
    monkeypatch.setattr(
        learners, "wait_started", lambda refs, timeout_s: {"learner rank 0": ("10.0.0.1", 29500)}
    )
    group.start()
    for rank in group.actors:
        [(args, kwargs)] = rank.calls
        assert args == ("10.0.0.1", 29500, 0, 10) and kwargs == {"timeout_s": 77.0}


class FakeWork:
    def __init__(self, done: bool = True, error: Exception | None = None):
        self.done, self.error = done, error

    def is_completed(self) -> bool:
        return self.done

    def wait(self) -> bool:
        if self.error is not None:
            raise self.error
        return True


class FakeGroup:
    """A process group that records its collectives and aborts; each broadcast returns `work`."""

    def __init__(self, *args, work: FakeWork | None = None):
        self.work = work or FakeWork()
        self.calls: list[tuple] = []

    def broadcast(self, tensor: torch.Tensor, root: int) -> FakeWork:
        self.calls.append(("broadcast", tensor.numel(), root))
        return self.work

    def abort(self) -> None:
        self.calls.append(("abort",))

    def shutdown(self) -> None:
        self.calls.append(("shutdown",))


def test_a_weight_group_is_warmed_up_before_it_is_returned(monkeypatch):
    group = FakeGroup()
    monkeypatch.setattr(transfer_group.dist, "ProcessGroupGloo", lambda *args: group)
    made = transfer_group.new_group(dist.HashStore(), "weights-w", 1, 3, torch.device("cpu"), 10)
    assert made is group
    assert group.calls == [("broadcast", 1, 0)]  # one element from the root, nothing else


class ConnectingGroup(FakeGroup):
    """An NCCL group whose first broadcast connects inside the call, as NCCL does: it blocks,
    returning no work to poll, until every member has joined (none will here) or the group is
    aborted (a non-blocking communicator's wait ends then)."""

    def __init__(self):
        super().__init__()
        self.aborted = threading.Event()
        self.returned = threading.Event()

    def broadcast(self, tensor: torch.Tensor, root: int) -> FakeWork:
        self.calls.append(("broadcast", tensor.numel(), root))
        self.aborted.wait()
        self.returned.set()
        raise RuntimeError("NCCL communicator was aborted")

    def abort(self) -> None:
        super().abort()
        self.aborted.set()


def test_a_warm_up_that_blocks_inside_broadcast_fails_at_the_deadline_and_aborts_the_group(
    monkeypatch,
):
    """A member that never arrives: the set-up's deadline still ends the wait, though the
    broadcast call itself never returns until the group is aborted."""
    group = ConnectingGroup()
    monkeypatch.setattr(transfer_group.dist, "ProcessGroupGloo", lambda *a: group)
    outcome: list = []

    def join() -> None:
        try:
            transfer_group.new_group(dist.HashStore(), "weights-x", 0, 2, torch.device("cpu"), 0.3)
        except RuntimeError as e:
            outcome.append(e)

    started = time.monotonic()
    joining = threading.Thread(target=join, daemon=True)
    joining.start()
    joining.join(timeout=10)
    waited = time.monotonic() - started
    assert not joining.is_alive(), "new_group waited on the blocked broadcast past its deadline"
    [error] = outcome
    assert re.search(r"'weights-x': rank 0's first broadcast .* within 0.3 s", str(error))
    assert 0.3 <= waited < 5
    assert group.calls == [("broadcast", 1, 0), ("abort",)]
    assert group.returned.wait(timeout=5), "the abort did not free the warm-up thread"


def test_an_nccl_weight_group_connects_non_blocking_with_the_group_timeout(monkeypatch):
    """NCCL cannot run here: the group class is faked to see the options it is given."""
    made: list = []

    class NCCLOptions:
        def __init__(self):
            self.config = types.SimpleNamespace(blocking=1)

    class FakeNCCL(FakeGroup):
        Options = NCCLOptions

        def __init__(self, store, rank, world_size, options):
            super().__init__()
            made.append(options)

    monkeypatch.setattr(transfer_group.dist, "ProcessGroupNCCL", FakeNCCL, raising=False)
    zeros = torch.zeros
    monkeypatch.setattr(torch, "zeros", lambda *size, device=None, **kw: zeros(*size, **kw))
    transfer_group.new_group(dist.HashStore(), "weights-n", 1, 2, torch.device("cuda", 0), 42)
    [options] = made
    assert options.config.blocking == 0 and options._timeout == timedelta(seconds=42)


class FakeEngine:
    """A rollout engine actor handle: `receive_broadcast.remote` returns a ref-like token."""

    class _Method:
        def remote(self, *args):
            return "receive-ref"

    receive_broadcast = _Method()


def test_a_failed_push_aborts_its_group_once_and_raises(monkeypatch):
    """gloo's wait raises at its timeout; the root aborts the group (held both as this push's
    and as the cached one) exactly once, forgets it and reports WeightPushFailed."""
    group = FakeGroup(work=FakeWork(error=RuntimeError("Timed out waiting 600000ms for recv")))
    sink = weight_sync.BroadcastWeightSink([FakeEngine()])
    sink._current = (group, "weights-y")
    monkeypatch.setitem(weight_sync._GROUPS, ("engine-0",), (group, "weights-y", None))
    with pytest.raises(weight_sync.WeightPushFailed, match="Timed out waiting") as failed:
        sink._send_bucket({"w": torch.ones(3)})
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert group.calls.count(("abort",)) == 1 and ("shutdown",) not in group.calls
    assert weight_sync._GROUPS == {} and sink._current is None


def test_an_engine_whose_receive_fails_aborts_its_group_and_raises():
    from olmorl.rollout.buckets import pack_bucket
    from olmorl.rollout.vllm_transfer import BucketUpdateInfo, OlmorlWeightTransferEngine

    engine = OlmorlWeightTransferEngine.__new__(OlmorlWeightTransferEngine)
    group = FakeGroup(work=FakeWork(error=RuntimeError("Connection closed by peer")))
    engine.group, engine.group_name, engine.device = group, "weights-z", torch.device("cpu")
    _, layout = pack_bucket({"w": torch.ones(3)})
    with pytest.raises(RuntimeError, match="Connection closed by peer"):
        engine.receive_weights(BucketUpdateInfo(layout=layout.as_dict(), group="weights-z"))
    assert group.calls == [("broadcast", layout.num_bytes, 0), ("abort",)]
    assert engine.group is None and engine.group_name == ""

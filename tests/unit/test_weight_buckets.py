"""Weight buckets survive the wire: packed on the root, broadcast through a gloo group made
without torch.distributed's default group, unpacked bit for bit on every receiver."""

import multiprocessing as mp

import pytest
import torch

from olmorl.rendezvous import open_store
from olmorl.rollout.buckets import BucketLayout, pack_bucket, unpack_bucket
from olmorl.rollout.transfer_group import (
    TransferGroupInfo,
    backend_for,
    broadcast_from_root,
    new_group,
)


def sample_bucket() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(7, 5, generator=g).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(6, 4, generator=g).t(),  # not contiguous
        "model.norm.weight": torch.randn(3, generator=g, dtype=torch.float64),
        "counts": torch.arange(5, dtype=torch.int32),
        "empty": torch.zeros(0, 4),
    }


def test_unpacked_tensors_equal_the_packed_ones_bit_for_bit():
    bucket = sample_bucket()
    buffer, layout = pack_bucket(bucket)
    assert buffer.dtype == torch.uint8
    assert buffer.numel() >= sum(t.numel() * t.element_size() for t in bucket.values())
    assert layout.dtypes == ["bfloat16", "float32", "float64", "int32", "float32"]
    # The layout crosses processes as plain data; rebuild it from that.
    unpacked = unpack_bucket(buffer.clone(), BucketLayout(**layout.as_dict()))
    assert [name for name, _ in unpacked] == list(bucket)
    for (_, got), want in zip(unpacked, bucket.values()):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)


def test_a_buffer_that_does_not_match_its_layout_is_refused():
    buffer, layout = pack_bucket(sample_bucket())
    with pytest.raises(ValueError, match="holds .* bytes but its layout describes"):
        unpack_bucket(buffer[:-2], layout)


def _device(kind: str, rank: int) -> torch.device:
    # NCCL needs a GPU of its own for every rank.
    return torch.device("cuda", rank) if kind == "cuda" else torch.device("cpu")


def _receive(info: dict, kind: str, results) -> None:
    info = TransferGroupInfo(**info)
    device = _device(kind, info.rank_offset)
    if kind == "cuda":
        torch.cuda.set_device(device)
    group = new_group(
        info.join_rendezvous(), info.name, info.rank_offset, info.world_size, device, info.timeout_s
    )
    _, layout = pack_bucket(sample_bucket())  # the receiver knows only the layout
    buffer = torch.empty(layout.num_bytes, dtype=torch.uint8, device=device)
    broadcast_from_root(group, buffer)
    results.put((info.rank_offset, {n: t.cpu() for n, t in unpack_bucket(buffer, layout)}))


@pytest.mark.parametrize(
    "kind",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(
                    torch.cuda.device_count() < 2, reason="NCCL needs two GPUs or more"
                ),
            ],
        ),
    ],
)
def test_a_bucket_broadcast_through_a_standalone_group_reaches_every_receiver(kind):
    """gloo between CPU processes, NCCL between GPUs: the same calls."""
    world = 3 if kind == "cpu" else min(3, torch.cuda.device_count())
    backend = backend_for(_device(kind, 0))
    ctx = mp.get_context("spawn")
    store = open_store(world, timeout_s=60)
    results = ctx.Queue()
    receivers = [
        ctx.Process(
            target=_receive,
            args=(
                TransferGroupInfo(
                    "127.0.0.1", store.port, "weights-test", backend, rank, world, 60
                ).as_dict(),
                kind,
                results,
            ),
        )
        for rank in range(1, world)
    ]
    for p in receivers:
        p.start()
    device = _device(kind, 0)
    group = new_group(store, "weights-test", 0, world, device, 60)
    buffer, _ = pack_bucket(sample_bucket(), device)
    broadcast_from_root(group, buffer)
    received = dict(results.get(timeout=60) for _ in receivers)
    for p in receivers:
        p.join(timeout=60)
    assert sorted(received) == list(range(1, world))
    for tensors in received.values():
        assert all(torch.equal(tensors[name], t) for name, t in sample_bucket().items())


def _join_and_stay_away(info: dict, leave) -> None:
    """Joins the group but never takes part in its broadcast: a peer that refused its bucket."""
    info = TransferGroupInfo(**info)
    group = new_group(
        info.join_rendezvous(),
        info.name,
        info.rank_offset,
        info.world_size,
        torch.device("cpu"),
        10,
    )
    leave.wait(30)
    del group


def test_a_broadcast_stops_waiting_as_soon_as_a_peer_is_known_to_have_failed():
    """Without the watch, the root would wait out the group's timeout for a peer that refused."""
    import time

    ctx = mp.get_context("spawn")
    store = open_store(2, timeout_s=10)
    leave = ctx.Event()
    info = TransferGroupInfo("127.0.0.1", store.port, "weights-refused", "gloo", 1, 2, 10)
    peer = ctx.Process(target=_join_and_stay_away, args=(info.as_dict(), leave))
    peer.start()
    group = new_group(store, "weights-refused", 0, 2, torch.device("cpu"), 10)
    buffer, _ = pack_bucket(sample_bucket())
    start = time.monotonic()

    def check_peers() -> None:
        if time.monotonic() - start > 0.5:
            raise RuntimeError("engine 1 refused the bucket")

    with pytest.raises(RuntimeError, match="refused the bucket"):
        broadcast_from_root(group, buffer, check_peers=check_peers)
    assert time.monotonic() - start < 5
    leave.set()
    peer.join(timeout=30)


@pytest.mark.parametrize("broadcast_s", [0.002, 0.22, 30.0])
def test_the_root_sees_a_broadcast_end_soon_after_it_does(monkeypatch, broadcast_s, fake_clock):
    """Each pause is at most a tenth of the time waited so far and at most 50 ms, so a 2 ms NCCL
    bucket and a 220 ms gloo one are both seen done within ~10% (+0.1 ms) of their end; a
    30 s wait is checked every 50 ms. (Doubling pauses from 0.1 ms saw 220 ms at ~405 ms.)"""
    from olmorl.rollout import transfer_group

    clock = fake_clock
    monkeypatch.setattr(transfer_group, "time", clock)
    transfer_group.wait_watching(lambda: clock.now >= broadcast_s, lambda: None)
    assert broadcast_s <= clock.now <= broadcast_s + max(0.1 * broadcast_s, 1e-4)
    assert clock.now <= broadcast_s + 0.05
    assert max(clock.sleeps) <= 0.05

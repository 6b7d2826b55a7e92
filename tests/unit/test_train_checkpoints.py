"""Resumable checkpoints: atomic, bounded, and a damaged one passed over for the one before."""

import pytest

from olmorl.train.checkpoints import (
    TRAIN_STATE_DIR,
    checkpoint_path,
    latest_checkpoint,
    write_checkpoint,
)


def fake_model_and_state(tag: str):
    def write(directory):
        (directory / "model.safetensors").write_text(f"weights {tag}")
        (directory / TRAIN_STATE_DIR).mkdir()
        (directory / TRAIN_STATE_DIR / "rank0.bin").write_text(f"optimizer {tag} " * 10)

    return write


def test_latest_intact_checkpoint_is_found(tmp_path):
    for step in (10, 20):
        write_checkpoint(
            tmp_path, step, {"examples_seen": step * 4}, fake_model_and_state(str(step))
        )
    path, state = latest_checkpoint(tmp_path)
    assert path == checkpoint_path(tmp_path, 20)
    assert state["step"] == 20 and state["examples_seen"] == 80
    assert "train_state/rank0.bin" in state["manifest"]


@pytest.mark.parametrize(
    "damage",
    ["truncate", "delete_state", "garble_trainer_state", "no_trainer_state"],
)
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    for step in (10, 20):
        write_checkpoint(tmp_path, step, {}, fake_model_and_state(str(step)))
    newest = checkpoint_path(tmp_path, 20)
    shard = newest / TRAIN_STATE_DIR / "rank0.bin"
    if damage == "truncate":
        shard.write_text(shard.read_text()[:5])
    elif damage == "delete_state":
        shard.unlink()
    elif damage == "garble_trainer_state":
        (newest / "trainer_state.json").write_text('{"step": 2')
    else:
        (newest / "trainer_state.json").unlink()
    path, state = latest_checkpoint(tmp_path)
    assert path == checkpoint_path(tmp_path, 10) and state["step"] == 10


def test_a_crash_while_writing_leaves_no_checkpoint_under_the_step_name(tmp_path):
    write_checkpoint(tmp_path, 10, {}, fake_model_and_state("10"))

    def crash(directory):
        (directory / "model.safetensors").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_checkpoint(tmp_path, 20, {}, crash)
    assert not checkpoint_path(tmp_path, 20).exists()
    assert latest_checkpoint(tmp_path)[0] == checkpoint_path(tmp_path, 10)


def test_only_the_newest_are_kept(tmp_path):
    for step in (1, 2, 3, 4):
        write_checkpoint(tmp_path, step, {}, fake_model_and_state(str(step)), keep=2)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step_000003", "step_000004"]


def test_no_checkpoint_is_none(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints" / "step_000005").mkdir(parents=True)
    assert latest_checkpoint(tmp_path) is None


def test_checkpoints_of_an_abandoned_attempt_are_removed(tmp_path):
    # Resumed from step 2, while a damaged step 3 from the attempt that died lies beside it.
    for step in (1, 2, 3):
        write_checkpoint(tmp_path, step, {}, fake_model_and_state(str(step)))
    (checkpoint_path(tmp_path, 3) / "trainer_state.json").write_text("{")
    write_checkpoint(tmp_path, 3, {}, fake_model_and_state("3 again"), keep=2)
    assert latest_checkpoint(tmp_path)[0] == checkpoint_path(tmp_path, 3)
    write_checkpoint(tmp_path, 5, {}, fake_model_and_state("5"), keep=2)
    write_checkpoint(tmp_path, 4, {}, fake_model_and_state("4 after a resume from 3"), keep=2)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step_000003", "step_000004"]


def test_a_resumed_log_forgets_the_steps_it_trains_again(tmp_path):
    from olmorl.metrics_log import drop_steps_after

    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(f'{{"step": {s}, "loss": 1.0}}\n' for s in range(6)))
    drop_steps_after(log, 3)
    assert [line[:10] for line in log.read_text().splitlines()] == [
        f'{{"step": {s}' for s in range(4)
    ]
    drop_steps_after(tmp_path / "absent.jsonl", 3)

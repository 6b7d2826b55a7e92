"""`olmorl pretrain` through the real stack: Ray learner actors, FSDP2, a two-source mix of a text
file and a token array, held-out loss, and a run SIGKILLed mid-way that resumes at the exact token.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobs import kill_session, logged_steps

from olmorl.config import PretrainConfig, load_config
from olmorl.data.synth import arithmetic_text_rows, write_jsonl
from olmorl.data.token_arrays import tokenize_files
from olmorl.train.pretrain import run_pretrain

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
STEPS = 12


def log(run_dir: Path, name: str) -> dict[int, dict]:
    lines = (run_dir / name).read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r}


@pytest.fixture(scope="module")
def pretrain_run(ray_cluster, tiny_model_dir, tmp_path_factory):
    """The tiny recipe on a mix: its text file (weight 3) and a token array made with `olmorl data
    tokenize` from other documents (weight 1); 12 steps, checkpoints every 4."""
    out = tmp_path_factory.mktemp("pretrain")
    extra = write_jsonl(arithmetic_text_rows(300, seed=7), out / "extra_text.jsonl")
    [(_, summary)] = tokenize_files([extra], str(tiny_model_dir), out / "tokens")
    sources = (
        f"[{{path: {REPO / 'recipes/tiny/data/arithmetic_text.jsonl'}, weight: 3, name: text}}, "
        f"{{path: {summary['array']}, weight: 1, name: array}}]"
    )
    cfg = load_config(
        PretrainConfig,
        REPO / "recipes/tiny/pretrain.yaml",
        [
            f"model.path={tiny_model_dir}",
            f"data.sources={sources}",
            f"data.eval=[{REPO / 'recipes/tiny/data/arithmetic_text_eval.jsonl'}]",
            f"run.output_dir={out}",
            "run.name=whole",
            f"run.steps={STEPS}",
            "run.checkpoint_every=4",
            "train.eval_every=6",
        ],
    )
    return run_pretrain(cfg, out / "whole")


def test_pretraining_lowers_held_out_loss_and_logs_throughput(pretrain_run):
    metrics = log(pretrain_run.run_dir, "metrics.jsonl")
    evals = {step: r["eval/loss"] for step, r in metrics.items() if "eval/loss" in r}
    assert sorted(evals) == [0, 6, 12]
    print(f"\nheld-out loss {evals[0]:.3f} -> {evals[6]:.3f} -> {evals[12]:.3f}")
    # One run: 6.58 -> 4.39 -> 3.84; a random model's loss is about log(vocab size) = 6.56.
    assert evals[12] < 0.7 * evals[0] and evals[12] < evals[6]
    last = metrics[STEPS]
    assert last["tokens_seen"] == STEPS * 4096
    assert last["tokens_per_s"] > 0 and 0 < last["mfu"] < 1
    assert metrics[0]["peak_flops_per_rank"] > 0
    # 3 : 1 by weight; 192 windows are part of one 1,024-window block, so not exactly.
    assert last["mix/text"] == pytest.approx(0.75, abs=0.08)
    assert last["mix/text"] + last["mix/array"] == pytest.approx(1.0)
    # wsd: warm-up over 1 step, constant, then a linear decay over the last 2.
    rates = [metrics[step]["lr"] for step in range(1, STEPS + 1)]
    assert rates[:10] == [3e-3] * 10 and rates[-2:] == [1.5e-3, 0.0]


def test_a_killed_run_resumes_at_the_exact_token(pretrain_run, tmp_path):
    """The same job as a process with its own Ray, SIGKILLed after step 5: step 4's checkpoint is
    the newest. Resumed, it must read exactly the windows the uninterrupted run read, and its
    losses continue that run's curve."""
    killed = tmp_path / "run"
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "olmorl",
            "pretrain",
            str(pretrain_run.run_dir / "config.yaml"),
            f"run.output_dir={tmp_path}",
            "run.name=run",
        ],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while logged_steps(killed) < 5 and job.poll() is None:
            assert time.monotonic() < deadline, "the job never reached step 5"
            time.sleep(0.1)
    finally:
        kill_session(job.pid)
    assert job.wait(timeout=60) == -signal.SIGKILL
    assert logged_steps(killed) < STEPS, "the job finished before it could be killed"

    cfg = load_config(PretrainConfig, killed / "config.yaml")
    resumed = run_pretrain(cfg, killed, resume=True)
    assert resumed.resumed_from == 4

    reference, again = log(pretrain_run.run_dir, "data_log.jsonl"), log(killed, "data_log.jsonl")
    assert sorted(again) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert again[step] == reference[step], step  # the windows and a hash of their tokens

    original, continued = log(pretrain_run.run_dir, "metrics.jsonl"), log(killed, "metrics.jsonl")
    worst = max(abs(continued[s]["loss"] - original[s]["loss"]) for s in range(5, STEPS + 1))
    print(f"\nlargest train-loss difference after the resume: {worst:.2e}")
    assert worst < 1e-4


def test_deepspeed_zero3_pretrains_as_fsdp2_does(pretrain_run, tmp_path):
    """The same job under ZeRO-3, with activation checkpointing: the same windows, the same losses
    (z-loss included) over the steps whose learning rates the shorter run shares, and a
    checkpoint with its optimizer state."""
    steps = 4  # wsd over 4 steps decays in the last; the 12-step run holds 3e-3 until step 10
    cfg = load_config(
        PretrainConfig,
        pretrain_run.run_dir / "config.yaml",
        [
            "learner.strategy={name: deepspeed, activation_checkpointing: true}",
            f"run.output_dir={tmp_path}",
            "run.name=zero3",
            f"run.steps={steps}",
            f"run.checkpoint_every={steps}",
            "train.eval_every=0",
        ],
    )
    result = run_pretrain(cfg, tmp_path / "zero3")
    fsdp2, zero3 = log(pretrain_run.run_dir, "metrics.jsonl"), log(result.run_dir, "metrics.jsonl")
    assert [zero3[s]["lr"] for s in range(1, steps)] == [fsdp2[s]["lr"] for s in range(1, steps)]
    reference, windows = (
        log(pretrain_run.run_dir, "data_log.jsonl"),
        log(result.run_dir, "data_log.jsonl"),
    )
    assert all(windows[s] == reference[s] for s in range(1, steps + 1))
    worst = max(
        abs(zero3[s][key] - fsdp2[s][key]) / fsdp2[s][key]
        for s in range(1, steps + 1)
        for key in ("loss", "z_loss")
    )
    print(f"\nZeRO-3 vs FSDP2: largest relative loss / z-loss difference {worst:.2e}")
    assert worst < 1e-3
    assert zero3[steps]["mfu"] > 0
    saved = result.run_dir / "checkpoints" / f"step_{steps:06d}"
    assert (saved / "model.safetensors").is_file() and any((saved / "train_state").iterdir())

"""SFT and DPO through the real stack: Ray learner actors, FSDP2, packed rows, checkpoints.

One SFT run of the tiny chat-copy recipe serves several tests; DPO then starts from its final
checkpoint, as Olmo 3's DPO starts from SFT.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from olmorl.config import DPOConfig, SFTConfig, load_config
from olmorl.train.dpo import run_dpo
from olmorl.train.sft import run_sft

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]


def records(metrics: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, metrics.read_text().splitlines())}


def exact_match(checkpoint: Path, rows_path: Path) -> float:
    """Share of held-out requests whose greedy reply is exactly the expected answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    hits = 0
    for row in rows:
        prompt = tokenizer.apply_chat_template(
            row["messages"][:-1], add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        out = model.generate(
            ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
        reply = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        hits += reply == row["messages"][-1]["content"]
    return hits / len(rows)


def tiny_recipe(config_class, name: str, *overrides: str):
    """A tiny recipe with its data paths made absolute (tests do not run from the repo root)."""
    cfg = load_config(config_class, REPO / "recipes" / "tiny" / name, list(overrides))
    data = cfg.data.model_copy(
        update={
            "train": [str(REPO / p) for p in cfg.data.train],
            "eval": [str(REPO / p) for p in cfg.data.eval],
        }
    )
    return cfg.model_copy(update={"data": data})


@pytest.fixture(scope="module")
def sft_run(ray_cluster, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    cfg = tiny_recipe(
        SFTConfig,
        "sft_copy.yaml",
        f"model.path={tiny_model_dir}",
        f"run.output_dir={out}",
        "run.keep_checkpoints=0",
    )
    return cfg, run_sft(cfg, out / "run")


def test_sft_lowers_held_out_loss_and_raises_exact_match(sft_run, tiny_model_dir):
    cfg, result = sft_run
    log = records(result.metrics)
    first, last = log[0]["eval/loss"], log[max(log)]["eval/loss"]
    print(f"held-out loss {first:.3f} -> {last:.3f}")
    assert last < 0.2 * first
    held_out = Path(cfg.data.eval[0])
    before, after = (
        exact_match(tiny_model_dir, held_out),
        exact_match(result.checkpoints[-1], held_out),
    )
    print(f"held-out exact match {before:.2f} -> {after:.2f}")
    assert before <= 0.1 and after >= 0.9


def test_resumed_sft_continues_exactly(sft_run, tmp_path):
    cfg, result = sft_run
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(result.run_dir, resumed_dir)
    # As if the run had died after step 40's checkpoint: later checkpoints and log lines gone.
    for checkpoint in (resumed_dir / "checkpoints").iterdir():
        if int(checkpoint.name.split("_")[1]) > 40:
            shutil.rmtree(checkpoint)
    kept = [
        line for line in result.metrics.read_text().splitlines() if json.loads(line)["step"] <= 40
    ]
    (resumed_dir / "metrics.jsonl").write_text("\n".join(kept) + "\n")

    resumed = run_sft(cfg, resumed_dir, resume=True)
    assert resumed.resumed_from == 40
    original, again = records(result.metrics), records(resumed.metrics)
    assert sorted(again) == sorted(original)
    worst = max(abs(again[s]["loss"] - original[s]["loss"]) for s in range(41, max(original) + 1))
    print(f"largest loss difference after the resume: {worst:.2e}")
    assert worst < 1e-5
    assert again[max(again)]["examples_seen"] == original[max(original)]["examples_seen"]


def dpo_config(sft_checkpoint: Path, out: Path, cache: Path, *overrides: str) -> DPOConfig:
    return tiny_recipe(
        DPOConfig,
        "dpo_copy.yaml",
        f"model.path={sft_checkpoint}",
        f"run.output_dir={out}",
        f"train.reference_cache={cache}",
        *overrides,
    )


def test_dpo_learns_preferences_and_reuses_the_reference_cache(sft_run, tmp_path):
    _, sft = sft_run
    cache = tmp_path / "reference_cache"
    cfg = dpo_config(sft.checkpoints[-1], tmp_path, cache)
    result = run_dpo(cfg, tmp_path / "first")
    log = records(result.metrics)
    assert log[0]["reference/forward_rows"] > 0 and log[0]["reference/cache_hits"] == 0
    # At step 0 the policy is the reference: every margin is 0, the loss log 2.
    assert log[0]["eval/loss"] == pytest.approx(0.6931, abs=1e-3)
    final = log[max(log)]["eval/rewards/accuracy"]
    print(f"held-out preference accuracy {log[0]['eval/rewards/accuracy']:.2f} -> {final:.2f}")
    assert final > 0.9

    again = records(
        run_dpo(
            dpo_config(sft.checkpoints[-1], tmp_path, cache, "run.steps=1"), tmp_path / "second"
        ).metrics
    )
    print(
        f"reference forward rows: first run {log[0]['reference/forward_rows']:.0f}, "
        f"second run {again[0]['reference/forward_rows']:.0f}"
    )
    assert again[0]["reference/forward_rows"] == 0 and again[0]["reference/cache_hits"] == 2
    assert again[0]["eval/loss"] == pytest.approx(log[0]["eval/loss"], abs=1e-6)
    assert again[1]["loss"] == pytest.approx(log[1]["loss"], abs=1e-5)


def test_fsdp2_and_deepspeed_give_the_same_sft_loss_curve(ray_cluster, tiny_model_dir, tmp_path):
    curves = {}
    for strategy in ("fsdp2", "deepspeed"):
        cfg = tiny_recipe(
            SFTConfig,
            "sft_copy.yaml",
            f"model.path={tiny_model_dir}",
            f"run.output_dir={tmp_path}",
            f"learner.strategy={strategy}",
            "run.steps=10",
            "train.eval_every=0",
        )
        log = records(run_sft(cfg, tmp_path / strategy).metrics)
        curves[strategy] = [log[step]["loss"] for step in range(1, 11)]
    fsdp2, deepspeed = curves["fsdp2"], curves["deepspeed"]
    worst = max(abs(a - b) / a for a, b in zip(fsdp2, deepspeed))
    print(
        f"loss {fsdp2[0]:.4f} -> {fsdp2[-1]:.4f} (fsdp2), {deepspeed[0]:.4f} -> "
        f"{deepspeed[-1]:.4f} (deepspeed); largest relative difference {worst:.2e}"
    )
    assert fsdp2[-1] < 0.6 * fsdp2[0]
    assert worst < 1e-3


def test_a_failing_learner_stops_the_run_naming_it_and_resume_continues(
    ray_cluster, tiny_model_dir, tmp_path, monkeypatch
):
    from olmorl.faults import FAULTS_ENV
    from olmorl.run_errors import RunFailed

    cfg = tiny_recipe(
        SFTConfig,
        "sft_copy.yaml",
        f"model.path={tiny_model_dir}",
        f"run.output_dir={tmp_path}",
        "run.steps=6",
        "run.checkpoint_every=2",
        "train.eval_every=0",
    )
    monkeypatch.setenv(FAULTS_ENV, "learner.step:rank=1:step=3=raise")
    with pytest.raises(RunFailed) as failure:
        run_sft(cfg, tmp_path / "run")
    message = str(failure.value)
    print(message)
    assert "learner sft_step failed on rank 1: RuntimeError: injected fault" in message
    assert failure.value.last_checkpoint == tmp_path / "run" / "checkpoints" / "step_000002"
    assert "rerun with --resume" in message

    monkeypatch.delenv(FAULTS_ENV)
    resumed = run_sft(cfg, tmp_path / "run", resume=True)
    assert resumed.resumed_from == 2
    assert max(records(resumed.metrics)) == 6


def test_a_stuck_learner_trips_the_watchdog_with_its_stack(
    ray_cluster, tiny_model_dir, tmp_path, monkeypatch
):
    import time

    from olmorl.faults import FAULTS_ENV
    from olmorl.run_errors import RunFailed

    limit = 20
    cfg = tiny_recipe(
        SFTConfig,
        "sft_copy.yaml",
        f"model.path={tiny_model_dir}",
        f"run.output_dir={tmp_path}",
        "run.steps=4",
        "train.eval_every=0",
        f"run.stage_timeout_s={limit}",
    )
    monkeypatch.setenv(FAULTS_ENV, "learner.step:rank=1:step=2=hang")
    started = time.monotonic()
    with pytest.raises(RunFailed) as failure:
        run_sft(cfg, tmp_path / "run")
    elapsed = time.monotonic() - started
    message = str(failure.value)
    print(message[:600], f"\n... stopped after {elapsed:.0f} s with a {limit} s limit")
    assert f"made no progress in sft_step for {limit} s" in message
    assert "--- rank 1 ---" in message and "in inject" in message
    assert failure.value.last_checkpoint is None
    # The limit, plus start-up and the step before the hang; never the hang's own length.
    assert limit <= elapsed < limit + 60

"""launch/learner_gpu_check.py runs on CPU with tiny sizes, importing neither Ray, vLLM, DeepSpeed
nor pydantic, and prints every check as a JSON line; its FLOP count matches a hand count."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "launch" / "learner_gpu_check.py"
TINY_ARGS = [
    "--device=cpu",
    "--preset=tiny",
    "--layers-7b=1",
    "--hidden=64",
    "--heads=2",
    "--intermediate=96",
    "--vocab=200",
    "--sliding-window=4",
    "--doc-lengths=5,9,6",
    "--chunk-tokens=8",
    "--warmup=1",
    "--steps=1",
    "--peak-tflops=1",
]
# The check must run where only torch and transformers are installed: these fail to import.
RUN_WITHOUT = (
    "import runpy, sys\n"
    "for name in ('ray', 'vllm', 'deepspeed', 'pydantic'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    run = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT, str(SCRIPT), *TINY_ARGS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the assertion below shows its stderr
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def by_check(records: list[dict], check: str) -> list[dict]:
    return [r for r in records if r["check"] == check]


def test_every_check_reports_on_both_models(records):
    (environment,) = by_check(records, "environment")
    assert environment["device"] == "cpu" and environment["attn_implementation"] == "sdpa"
    for check in ("train_step", "memory", "mfu", "packing"):
        assert [r["model"] for r in by_check(records, check)] == ["tiny", "7b-shaped-1-layers"]


def test_the_train_step_is_finite_and_starts_near_uniform(records):
    for step in by_check(records, "train_step"):
        assert step["grads_finite"] and step["grad_norm"] > 0 and step["tokens"] == 20
        # Random weights of std 0.02 predict almost uniformly: the NLL is about ln(vocab).
        assert abs(step["loss"] - step["ln_vocab"]) < 0.5


def test_memory_mfu_and_packing_fields(records):
    params = {r["model"]: r["params"] for r in by_check(records, "train_step")}
    for memory in by_check(records, "memory"):
        assert memory["peak_bytes"] is None  # CUDA only
        estimate = memory["estimate"]
        # The formula's parameter count is the model's.
        assert estimate["params"] == 4 * params[memory["model"]]
        assert memory["estimate_bytes"] == sum(estimate.values()) > 16 * params[memory["model"]]
    for mfu in by_check(records, "mfu"):
        assert mfu["step_seconds"] > 0 and 0 < mfu["mfu"] < 1
        assert mfu["achieved_tflops"] == pytest.approx(
            (mfu["matmul_flops"] + mfu["attention_flops"]) / mfu["step_seconds"] / 1e12
        )
    for packing in by_check(records, "packing"):
        # bf16 compute: packed and one-by-one runs round differently, but attention stays
        # within each document (crossing it would move log-probs by far more).
        assert packing["max_abs_logprob_diff"] < 0.05


def test_step_flops_by_hand():
    spec = importlib.util.spec_from_file_location("learner_gpu_check", SCRIPT)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    from olmorl.models.tiny import TinyModelPreset, build_tiny_config

    shape = TinyModelPreset(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=96)
    config = build_tiny_config(shape, vocab_size=128, sliding_window=2)
    assert config.layer_types == ["sliding_attention", "full_attention"]
    flops = check.step_flops(config, [5, 3])
    # Per layer q, k, v, o 4·64² + MLP 3·64·96 = 34,816, and the q, k and two post-norms 4·64;
    # the head 128·64 = 8,192 and the final norm 64 (the input embeddings multiply nothing):
    # N = 2·(34,816 + 256) + 8,192 + 64 = 78,400, over 8 tokens.
    assert flops["matmul_flops"] == 6 * 78_400 * 8
    # (query, key) pairs, Σ min(q, w): sliding (w = 2) 1+2+2+2+2 + 1+2+2 = 14; full 15 + 6 = 21.
    assert flops["attention_flops"] == 12 * 64 * (14 + 21)

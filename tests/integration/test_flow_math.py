"""The whole Olmo 3 flow in miniature, shortened: pretrain -> midtrain -> long-context -> SFT ->
DPO -> RL from a random tiny Olmo3 (`recipes/tiny/flow_math.yaml`), each stage from the last one's
checkpoint; each stage must improve its own held-out metric, and the flow writes report.md.

Pretraining and SFT run their whole recipes (pretraining about 2 minutes here): SFT's exact
answers and RL's held-out accuracy need a model that has learnt to copy operands and add.
Midtraining, long-context and DPO are shortened, and RL takes 40 steps of 16 groups.
"""

import contextlib
import filecmp
import itertools
import json
import re
from pathlib import Path

import pytest

from olmorl.config import load_config
from olmorl.config.flow import FlowConfig
from olmorl.flow import run_flow
from olmorl.flow_report import (
    greedy_replies,
    held_out_accuracy,
    is_correct,
    write_report,
)
from verifiers.math_answer import last_boxed

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
REPLY_TOKENS = 48  # the RL recipe's rollout.max_response_tokens
BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")  # what the math verifier reads an answer from
BOXED_ARITHMETIC = re.compile(r"\d\s*[-+*/]\s*\d")  # "6 + 8 - 2", not a value such as "-12"
SHORTER = {
    "pretrain": ["train.eval_every=300"],
    "midtrain": ["run.steps=10", "train.eval_every=10"],
    "long_context": ["run.steps=4", "data.seq_len_schedule={2: 1024, 3: 2048}"],
    "sft": ["train.eval_every=60"],
    "dpo": ["run.steps=10", "train.eval_every=10"],
    # RL as measured in seven runs of this test: 16 groups a step, not the recipe's 64, whose 30
    # steps take about twice as long here (336 s against about 180 s in a full flow). The
    # shortened flow's weaker model learns from 16; the full flow's needs the 64.
    "rl": [
        "algo.prompts_per_step=16",
        "run.steps=40",
        "eval.every=40",
        "eval.samples_per_prompt=8",
    ],
}


@pytest.fixture(scope="module")
def math_flow(ray_cluster, tiny_model_dir, tmp_path_factory):
    flow = load_config(FlowConfig, REPO / "recipes/tiny/flow_math.yaml")
    stages = [
        stage.model_copy(
            update={
                "overrides": [
                    *([f"model.path={tiny_model_dir}"] if i == 0 else []),
                    *SHORTER[stage.name],
                    "run.checkpoint_every=0",
                ]
            }
        )
        for i, stage in enumerate(flow.stages)
    ]
    flow = flow.model_copy(update={"stages": stages})
    flow_dir = tmp_path_factory.mktemp("flow") / "flow_math"
    with contextlib.chdir(REPO):  # the recipes name their data relative to the repository
        results = run_flow(flow, flow_dir, say=lambda _: None)
    return flow, flow_dir, {r.stage: r for r in results}


def evals(result, key: str) -> list[float]:
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    return [r[key] for r in map(json.loads, lines) if key in r]


@pytest.fixture(scope="module")
def held_out_rows(math_flow) -> list[dict]:
    flow, _, _ = math_flow
    return [json.loads(line) for line in (REPO / flow.report_eval).read_text().splitlines()]


def test_each_stage_improves_its_own_held_out_metric(math_flow):
    """Pretrain, midtrain and long-context lower their held-out loss (long-context's on 2,048-token
    windows), SFT its held-out loss in the chat format, DPO raises held-out preference accuracy;
    RL's held-out accuracy is the test below."""
    _, _, stages = math_flow
    for stage in ("pretrain", "midtrain", "long_context", "sft"):
        loss = evals(stages[stage], "eval/loss")
        print(f"\n{stage}: held-out loss {loss[0]:.3f} -> {loss[-1]:.3f}")
        assert loss[-1] < loss[0], stage
    dpo = evals(stages["dpo"], "eval/rewards/accuracy")
    print(f"dpo: held-out preference accuracy {dpo[0]:.2f} -> {dpo[-1]:.2f}")
    assert dpo[-1] >= dpo[0] + 0.3


def test_sft_gives_exact_answers_to_held_out_questions(math_flow, held_out_rows):
    """Greedy answers to held-out expressions asked in the chat format, boxed as asked, through
    the `math` verifier: almost none before SFT (the long-context checkpoint never saw the chat
    template), a third after it (0.00 -> 0.34 here)."""
    _, _, stages = math_flow
    before = held_out_accuracy(stages["long_context"].checkpoint, held_out_rows, True, REPLY_TOKENS)
    after = held_out_accuracy(stages["sft"].checkpoint, held_out_rows, True, REPLY_TOKENS)
    print(f"\nheld-out exact answers (chat, greedy): before SFT {before:.2f}, after {after:.2f}")
    assert after >= before + 0.2


def test_rl_raises_held_out_accuracy_without_hedging(math_flow, held_out_rows):
    """RL raises held-out accuracy in the run's own evaluation (8 samples of each of 64 held-out
    expressions, through the `math` verifier). Greedy replies decoded outside the training stack
    (transformers) are printed against the DPO checkpoint RL started from. The reward reads the
    last boxed answer only, so boxing several candidates would be a hedge it pays for, and it judges
    by value, so boxing the question's own expression ("\\boxed{6 + 8 - 2}") would pay without any
    arithmetic: no reply it accepts does either."""
    _, _, stages = math_flow
    sampled = evals(stages["rl"], "eval/reward")
    assert len(sampled) == 2  # step 0 and the end
    before = held_out_accuracy(stages["dpo"].checkpoint, held_out_rows, True, REPLY_TOKENS)
    replies = greedy_replies(stages["rl"].checkpoint, held_out_rows, True, REPLY_TOKENS)
    verdicts = [is_correct(row, r, True) for row, r in zip(held_out_rows, replies, strict=True)]
    after = sum(verdicts) / len(verdicts)
    print(
        f"\nheld-out accuracy: sampled {sampled[0]:.3f} -> {sampled[-1]:.3f}, "
        f"greedy {before:.2f} -> {after:.2f}"
    )
    # Seven runs here (six of 40 steps, one of 30): +0.03 to +0.09 (0.13-0.16 -> 0.19-0.23), while
    # the DPO checkpoint's own score spread 0.13-0.16 (CPU requests are unseeded). Greedy accuracy
    # moved by 0 to 9 of 64 (0.36 -> 0.36-0.50; 0.55 after 60 steps), too unevenly to assert.
    assert sampled[-1] >= sampled[0] + 0.02
    # A garbled reply may open several boxes and score nothing (one of 64 did in a run here);
    # what must not happen is a reply that scores with several.
    hedged = [
        r for r, ok in zip(replies, verdicts, strict=True) if ok and len(BOX_OPEN.findall(r)) > 1
    ]
    assert hedged == []
    copied = [
        r
        for r, ok in zip(replies, verdicts, strict=True)
        if ok and BOXED_ARITHMETIC.search(last_boxed(r) or "")
    ]
    assert copied == []


def test_the_long_context_stage_extends_with_yarn_and_steps_the_length_up(math_flow):
    """YaRN on the full-attention layers only, in a checkpoint transformers and vLLM load (the
    vLLM agreement is tests/integration/test_tiny_model_vllm.py), and windows that grow on
    schedule within the run."""
    _, _, stages = math_flow
    result = stages["long_context"]
    lines = (result.run_dir / "data_log.jsonl").read_text().splitlines()
    assert [r["seq_len"] for r in map(json.loads, lines)] == [512, 1024, 2048, 2048]
    config = json.loads((result.checkpoint / "config.json").read_text())
    assert config["max_position_embeddings"] == 2048
    assert config["rope_parameters"]["full_attention"]["rope_type"] == "yarn"
    assert config["rope_parameters"]["sliding_attention"]["rope_type"] == "default"


def test_every_stage_starts_from_the_one_before(math_flow):
    flow, _, stages = math_flow
    names = [stage.name for stage in flow.stages]
    for before, after in itertools.pairwise(names):
        config = (stages[after].run_dir / "config.yaml").read_text()
        start = stages[before].checkpoint
        if after == "long_context":  # YaRN goes onto a copy in the run directory first
            copy = stages[after].run_dir / "long_context_start" / "model.safetensors"
            assert filecmp.cmp(copy, start / "model.safetensors", shallow=False)
        else:
            assert f"path: {start}" in config, after


def test_the_report_has_every_stage_and_its_curves(math_flow):
    flow, flow_dir, stages = math_flow
    report = write_report(
        flow_dir,
        [(s.name, s.kind, stages[s.name].run_dir, stages[s.name].checkpoint) for s in flow.stages],
        stages["pretrain"].checkpoint,
    ).read_text()
    for stage in flow.stages:
        assert f"| {stage.name} | {stage.kind} |" in report
    assert "![rl](rl/reward.png)" in report and "![dpo](dpo/dpo.png)" in report

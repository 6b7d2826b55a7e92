"""The whole Olmo 3 flow in miniature, shortened: pretrain -> midtrain -> long-context -> SFT ->
DPO -> RL from a random tiny Olmo3 (`recipes/tiny/flow_math.yaml`), each stage from the last one's
checkpoint; each stage must improve its own held-out metric, and the flow writes report.md.
"""

import contextlib
import filecmp
import itertools
import json
from pathlib import Path

import pytest

from olmorl.config import load_config
from olmorl.config.flow import FlowConfig
from olmorl.flow import run_flow
from olmorl.flow_report import write_report

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
SHORTER = {
    "pretrain": ["run.steps=40", "train.eval_every=20"],
    "midtrain": ["run.steps=10", "train.eval_every=10"],
    "long_context": ["run.steps=4", "data.seq_len_schedule={2: 1024, 3: 2048}"],
    "sft": ["run.steps=25", "train.eval_every=25"],
    "dpo": ["run.steps=10", "train.eval_every=10"],
    # Long enough to show the hand-off and the held-out evaluation, not learning (see below).
    "rl": ["run.steps=3", "eval.every=3", "eval.max_prompts=16", "algo.active_sampling=false"],
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


def test_each_stage_improves_its_own_held_out_metric(math_flow):
    """Pretrain, midtrain and long-context lower their held-out loss (long-context's on 2,048-token
    windows), SFT its held-out loss in the chat format, DPO raises held-out preference accuracy.
    RL here only runs. Its held-out accuracy, and SFT's exact answers, rise in the full flow
    (README), whose 500 pretraining steps teach the model to copy operands: with 300 here, SFT
    took exact answers from 0.00 to 0.16 only and 12 RL steps moved accuracy 0.17 -> 0.11."""
    _, _, stages = math_flow
    for stage in ("pretrain", "midtrain", "long_context", "sft"):
        loss = evals(stages[stage], "eval/loss")
        print(f"\n{stage}: held-out loss {loss[0]:.3f} -> {loss[-1]:.3f}")
        assert loss[-1] < loss[0], stage
    dpo = evals(stages["dpo"], "eval/rewards/accuracy")
    print(f"dpo: held-out preference accuracy {dpo[0]:.2f} -> {dpo[-1]:.2f}")
    assert dpo[-1] >= dpo[0] + 0.3
    rl = evals(stages["rl"], "eval/reward")
    assert len(rl) == 2  # step 0 and the end


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

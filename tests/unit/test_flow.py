"""The flow runner: stage order, each stage from the last one's checkpoint, finished stages
skipped on a rerun, a stopped one resumed. The trainers are replaced by a recorder."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

import olmorl.flow as flow_module
from olmorl.config.flow import FlowConfig
from olmorl.flow import run_flow

REPO = Path(__file__).parents[2]


@dataclass
class FakeResult:
    checkpoints: list[Path] = field(default_factory=list)


def two_stages() -> FlowConfig:
    return FlowConfig(
        stages=[
            {"name": "sft", "kind": "sft", "recipe": str(REPO / "recipes/tiny/sft_copy.yaml")},
            {"name": "rl", "kind": "rl", "recipe": str(REPO / "recipes/tiny/rl_target_token.yaml")},
        ]
    )


@pytest.fixture
def calls(monkeypatch):
    calls = []

    def fake_run_stage(kind, cfg, run_dir, resume):
        calls.append((kind, cfg.model.path, run_dir.name, resume))
        return FakeResult([run_dir / "checkpoints" / "step_000002"])

    monkeypatch.setattr(flow_module, "run_stage", fake_run_stage)
    return calls


def test_each_stage_starts_from_the_last_ones_checkpoint(calls, tmp_path):
    results = run_flow(two_stages(), tmp_path, say=lambda _: None)
    assert calls == [
        ("sft", "models/tiny", "sft", False),
        ("rl", str(tmp_path / "sft/checkpoints/step_000002"), "rl", False),
    ]
    assert [r.checkpoint for r in results] == [
        tmp_path / "sft/checkpoints/step_000002",
        tmp_path / "rl/checkpoints/step_000002",
    ]


def test_a_rerun_skips_finished_stages_and_resumes_the_stopped_one(calls, monkeypatch, tmp_path):
    def rl_dies(kind, cfg, run_dir, resume):
        if kind == "rl":
            run_dir.mkdir(parents=True)  # it started, then was killed
            raise RuntimeError("killed")
        return FakeResult([run_dir / "checkpoints" / "step_000002"])

    with monkeypatch.context() as patch:
        patch.setattr(flow_module, "run_stage", rl_dies)
        with pytest.raises(RuntimeError, match="killed"):
            run_flow(two_stages(), tmp_path, say=lambda _: None)
    results = run_flow(two_stages(), tmp_path, say=lambda _: None)
    # SFT is not run again; RL starts from its checkpoint and resumes in its own directory.
    assert calls == [("rl", str(tmp_path / "sft/checkpoints/step_000002"), "rl", True)]
    assert [r.run is None for r in results] == [True, False]


def test_a_stage_without_a_checkpoint_stops_the_flow(monkeypatch, tmp_path):
    monkeypatch.setattr(flow_module, "run_stage", lambda *args: FakeResult([]))
    with pytest.raises(ValueError, match="stage sft wrote no checkpoint"):
        run_flow(two_stages(), tmp_path, say=lambda _: None)


def test_stage_names_must_be_unique():
    stage = {"name": "sft", "kind": "sft", "recipe": "recipes/tiny/sft_copy.yaml"}
    with pytest.raises(ValidationError, match="repeated: sft"):
        FlowConfig(stages=[stage, stage])

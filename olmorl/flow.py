"""`olmorl flow`: a flow's stages (pretrain, SFT, DPO, RL) one after another, each from the last one's
final checkpoint, each in `<flow dir>/<stage name>` as its own run.

A finished stage leaves `stage_done.json` naming its final checkpoint; running the flow again
skips it. A stage that was stopped part-way resumes from its newest checkpoint, as `--resume`
does for a single run.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from olmorl.config import DPOConfig, PretrainConfig, RLConfig, SFTConfig, load_config
from olmorl.config.flow import FlowConfig, FlowStage
from olmorl.io import atomic_write_text

STAGE_CONFIGS = {
    "pretrain": PretrainConfig,
    "sft": SFTConfig,
    "dpo": DPOConfig,
    "rl": RLConfig,
}
DONE_NAME = "stage_done.json"


@dataclass(frozen=True)
class StageResult:
    stage: str
    run_dir: Path
    checkpoint: Path
    run: object | None
    """The stage's RunResult; None when it finished in an earlier run of the flow (skipped)."""


def stage_config(stage: FlowStage, flow_dir: Path, start_from: Path | None):
    """The stage's recipe with its overrides, its run directory in the flow's, and its model."""
    overrides = [
        *stage.overrides,
        *([f"model.path={start_from}"] if start_from else []),
        f"run.output_dir={flow_dir}",
        f"run.name={stage.name}",
    ]
    return load_config(STAGE_CONFIGS[stage.kind], stage.recipe, overrides)


def run_stage(kind: str, cfg, run_dir: Path, resume: bool):
    import importlib

    module = "olmorl.rl.loop" if kind == "rl" else f"olmorl.train.{kind}"
    return getattr(importlib.import_module(module), f"run_{kind}")(cfg, run_dir, resume)


def run_flow(
    flow: FlowConfig,
    flow_dir: Path,
    prepare: Callable[[object], None] = lambda cfg: None,
    say: Callable[[str], None] = print,
) -> list[StageResult]:
    """Runs the stages not yet done; `prepare(cfg)` runs before each stage starts (the CLI writes
    a missing tiny model there)."""
    results, start_from = [], None
    for stage in flow.stages:
        run_dir = flow_dir / stage.name
        done = run_dir / DONE_NAME
        if done.exists():
            start_from = Path(json.loads(done.read_text())["checkpoint"])
            say(f"stage {stage.name}: done in an earlier run, from {start_from}")
            results.append(StageResult(stage.name, run_dir, start_from, None))
            continue
        cfg = stage_config(stage, flow_dir, start_from)
        prepare(cfg)
        resume = run_dir.exists()
        say(f"stage {stage.name} ({stage.kind}, {stage.recipe})" + (": resuming" if resume else ""))
        started = time.monotonic()
        result = run_stage(stage.kind, cfg, run_dir, resume)
        if not result.checkpoints:
            raise ValueError(
                f"stage {stage.name} wrote no checkpoint for the next stage to start from; "
                "set run.checkpoint_every in its recipe"
            )
        start_from = result.checkpoints[-1]
        # The wall time of this attempt only, when the stage was resumed.
        seconds = time.monotonic() - started
        atomic_write_text(
            done, json.dumps({"checkpoint": str(start_from), "seconds": seconds}) + "\n"
        )
        results.append(StageResult(stage.name, run_dir, start_from, result))
    return results

"""The loop the offline trainers share: start learners, resume, train step by step, evaluate,
checkpoint, plot, and log what each step trained on. What a step *is* comes from the trainer
(sft.py, dpo.py, pretrain.py).
"""

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from olmorl.config import write_resolved_config
from olmorl.io import atomic_write_text


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    """Where everything below lives."""
    metrics: Path
    """One JSON object per step."""
    plot: Path
    """The trainer's curves per step."""
    checkpoints: tuple[Path, ...]
    """Checkpoints written by this invocation, oldest first; the last is the final model."""
    resumed_from: int = 0
    """The step the run resumed after (0: it started from scratch)."""


def load_splits(cfg, load_sets, what: str):
    """`load_sets(sources, tokenizer, max_tokens, on_bad_row)` for cfg.data.train and .eval:
    (train examples, held-out examples, report of rows kept and skipped per split and file)."""
    from transformers import AutoTokenizer

    from olmorl.data.loading import DataError

    data = cfg.data
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    train, train_report = load_sets(data.train, tokenizer, data.max_tokens, data.on_bad_row)
    held_out, eval_report = load_sets(data.eval, tokenizer, data.max_tokens, data.on_bad_row)
    if not train:
        raise DataError(f"{', '.join(data.train)}: no usable {what} (see the skipped rows)")
    return train, held_out, {"train": train_report, "eval": eval_report}


class OfflineTrainer(Protocol):
    name: str
    """Progress bar label and plot file stem, e.g. `sft`."""
    plot_panels: Sequence[tuple[str, str]]
    """(metric key, axis label) per panel of the plot."""
    data_report: Mapping[str, Any]
    """Examples loaded and rows skipped per file and reason; written to the run directory."""

    def num_steps(self) -> int: ...

    def prepare(self, learners) -> dict[str, float]:
        """Work before the first step (DPO: reference log-probs); metrics for the log."""

    def step_data(self, step: int) -> dict[str, Any]:
        """What step `step` trains on (example indices, token windows), for the data log."""

    def train_step(self, learners, step: int) -> dict[str, float]:
        """Optimizer step `step` (1-based) on the learners; its metrics."""

    def evaluate(self, learners) -> dict[str, float]:
        """Held-out metrics (`eval/...`), or {} without held-out data."""


def run_offline(trainer: OfflineTrainer, cfg, run_dir: Path, resume: bool) -> RunResult:
    """Runs `trainer` under `cfg` (an SFT or DPO config) in `run_dir`."""
    import ray
    from tqdm import tqdm

    from olmorl.actor_logs import actor_log_dir
    from olmorl.metrics_log import (
        DATA_LOG_NAME,
        METRICS_NAME,
        MetricsLog,
        drop_steps_after,
        plot_metrics,
    )
    from olmorl.ray_init import ActorStartTimeout, init_ray
    from olmorl.run_errors import stopped
    from olmorl.train.checkpoints import latest_checkpoint, write_checkpoint
    from olmorl.train.learners import LearnerFailed, LearnerGroup, LearnerStalled

    steps = trainer.num_steps()
    found = latest_checkpoint(run_dir) if resume else None
    start = found[1]["step"] if found else 0
    write_resolved_config(cfg, run_dir)
    for name in (METRICS_NAME, DATA_LOG_NAME):
        drop_steps_after(run_dir / name, start)
    atomic_write_text(run_dir / "data_report.json", _json(trainer.data_report))
    log = MetricsLog(run_dir, cfg.run, cfg.model_dump(mode="json"))
    started_ray = init_ray(cfg.learner.num_workers, actor_log_dir(cfg.run, run_dir))
    learners = None
    checkpoints: list[Path] = []
    data_log = (run_dir / DATA_LOG_NAME).open("a")
    try:
        learners = LearnerGroup(
            cfg.model, cfg.learner, cfg.run.seed, steps, stage_timeout_s=cfg.run.stage_timeout_s
        )
        learners.wait("setup", learners.start())
        # Before a resumed state is loaded: DPO's reference is the starting weights.
        prepared = trainer.prepare(learners)
        if found:
            learners.load(found[0])
        if start == 0:
            log.log(
                0, {**skipped_rows(trainer.data_report), **prepared, **trainer.evaluate(learners)}
            )
        bar = tqdm(
            range(start + 1, steps + 1),
            desc=f"olmorl {trainer.name}",
            unit="step",
            initial=start,
            total=steps,
            dynamic_ncols=True,
        )
        for step in bar:
            t0 = time.perf_counter()
            metrics = trainer.train_step(learners, step)
            metrics["time/step"] = time.perf_counter() - t0
            every = cfg.train.eval_every
            if step == steps or (every and step % every == 0):
                metrics.update(trainer.evaluate(learners))
            log.log(step, metrics)
            data_log.write(json.dumps({"step": step, **trainer.step_data(step)}) + "\n")
            data_log.flush()
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", step_s=f"{metrics['time/step']:.1f}")
            every = cfg.run.checkpoint_every
            if step == steps or (every and step % every == 0):
                checkpoints.append(
                    write_checkpoint(
                        run_dir,
                        step,
                        {k: metrics[k] for k in ("examples_seen", "tokens_seen") if k in metrics},
                        learners.save,
                        cfg.run.keep_checkpoints,
                    )
                )
    except (LearnerFailed, LearnerStalled, ActorStartTimeout) as e:
        raise stopped(e, run_dir) from None
    finally:
        log.close()
        data_log.close()
        if learners is not None:
            learners.shutdown()
        if started_ray:
            ray.shutdown()
    plot = plot_metrics(log.path, run_dir / f"{trainer.name}.png", trainer.plot_panels)
    return RunResult(run_dir, log.path, plot, tuple(checkpoints), start)


def skipped_rows(report: Mapping[str, Any]) -> dict[str, float]:
    """Skipped rows per reason over every file of the data report, as `data/skipped/<reason>`;
    printed too, so that skipping is never silent."""
    totals: dict[str, float] = {}
    for files in report.values():
        for counts in files.values():
            for key, value in counts.items():
                if key.startswith("skipped/"):
                    totals[f"data/{key}"] = totals.get(f"data/{key}", 0.0) + value
    if totals:
        listed = ", ".join(f"{k.removeprefix('data/skipped/')}: {v:.0f}" for k, v in totals.items())
        print(f"skipped {sum(totals.values()):.0f} bad rows ({listed}); see data_report.json")
    return totals


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True)

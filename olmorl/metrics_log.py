"""Run outputs for metrics: a JSONL line per step, optional wandb, and a PNG of chosen curves."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from olmorl.config import RunConfig

METRICS_NAME = "metrics.jsonl"
DATA_LOG_NAME = "data_log.jsonl"
"""What each step trained on, one JSON line per step: the check that a resumed run saw exactly
the data an uninterrupted one would."""


class MetricsLog:
    """Appends one JSON object per step to `run_dir/metrics.jsonl` (and to wandb when enabled)."""

    def __init__(self, run_dir: Path, run: RunConfig, config: Mapping):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / METRICS_NAME
        self._file = self.path.open("a")
        self._wandb = None
        if run.wandb.enabled:
            import wandb

            self._wandb = wandb.init(
                project=run.wandb.project,
                name=run_dir.name,
                dir=str(run_dir),
                mode=run.wandb.mode,
                config=dict(config),
            )

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self._file.write(json.dumps({"step": step, **metrics}) + "\n")
        self._file.flush()
        if self._wandb is not None:
            self._wandb.log(dict(metrics), step=step)

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_records(log: Path) -> list[dict]:
    """The JSON objects of a JSONL log, one per non-blank line, in order."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def drop_steps_after(log: Path, step: int) -> None:
    """Removes the lines of steps after `step` from a JSONL log: a resumed run trains them again,
    and the abandoned attempt's lines would show them twice."""
    if not log.is_file():
        return
    from olmorl.io import atomic_write_text

    lines = log.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        atomic_write_text(log, "".join(line + "\n" for line in kept))


def plot_metrics(metrics_path: Path, out_path: Path, panels: Sequence[tuple[str, str]]) -> Path:
    """One panel per (metric key, axis label), against the step, as a PNG; steps that did not
    log a key (evaluations run every few steps) are left out of its panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_records(metrics_path)
    fig, _ = plt.subplots(len(panels), 1, figsize=(7, 3 * len(panels)), sharex=True, squeeze=False)
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for index, (ax, (key, label)) in enumerate(zip(fig.axes, panels, strict=True)):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(
            *zip(*points) if points else ([], []),
            color=colors[index % len(colors)],
            marker="o" if len(points) < 20 else None,
        )
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.axes[-1].set_xlabel("step")
    fig.suptitle(metrics_path.parent.name)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path

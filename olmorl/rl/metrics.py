"""Run outputs for metrics: a JSONL line per step, optional wandb, and a reward/length plot."""

import json
from collections.abc import Mapping
from pathlib import Path

from olmorl.config import RunConfig

METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "reward.png"


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


def plot_metrics(metrics_path: Path, out_path: Path) -> Path:
    """Mean reward and mean response length per step, one panel each, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(steps, [r["reward"] for r in records], color="tab:blue")
    top.set_ylabel("mean reward")
    top.grid(alpha=0.3)
    bottom.plot(steps, [r["response_tokens"] for r in records], color="tab:orange")
    bottom.set_ylabel("response tokens")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    fig.suptitle(metrics_path.parent.name)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path

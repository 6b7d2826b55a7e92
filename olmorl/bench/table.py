"""What every benchmark reports: work done per second on each side, as a ratio to the first side."""

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchResult:
    name: str
    """Which side, e.g. `vllm` / `olmorl`, or `in-process` / `sandboxed`."""
    count: int
    """Units of work done (tokens, verifications, executions)."""
    seconds: float
    """Wall time from the first unit submitted to the last finished."""

    @property
    def per_s(self) -> float:
        return self.count / self.seconds


def format_table(results: list[BenchResult], unit: str) -> str:
    """One line per side; `ratio` is its rate over the first side's, the baseline."""
    baseline = results[0].per_s
    width = max(len(r.name) for r in results + [BenchResult("side", 0, 1)])
    lines = [f"{'side':<{width}} {unit:>11} {'seconds':>8} {unit + '/s':>13} {'ratio':>6}"]
    for r in results:
        lines.append(
            f"{r.name:<{width}} {r.count:>11} {r.seconds:>8.2f} {r.per_s:>13.1f} "
            f"{r.per_s / baseline:>6.2f}"
        )
    return "\n".join(lines)

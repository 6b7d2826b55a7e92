"""`olmorl bench decontamination`: whether `olmorl data decontaminate` grows as its module says,
time linearly with the training data and memory with the evaluation data only.

Two series on synthetic chat rows, each size a multiple (`scale`) of a base: training rows scaled
with the evaluation rows fixed, then evaluation rows scaled with the training rows fixed. Linear
growth shows as ratios (to the series' first size) equal to the scales; memory that stays flat
while the training rows grow is what streaming them buys.

Each size runs twice: once timed, with the growth of the process's peak RSS (which sees Arrow
and other native buffers), then once under tracemalloc for the Python heap's peak (tracemalloc
slows allocation several-fold, so that run's time is not reported). Each size plants known
copies of evaluation questions among the training rows; the bench fails unless exactly those
are removed, so a fast run that misses them cannot pass.
"""

import gc
import json
import random
import re
import shutil
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from olmorl.data.decontamination import decontaminate

MIB = 1 << 20


@dataclass(frozen=True)
class ScalePoint:
    series: str
    """`train` (training rows scaled) or `eval` (evaluation rows scaled)."""
    scale: int
    train_rows: int
    eval_rows: int
    seconds: float
    heap_mib: float
    """Peak Python heap (tracemalloc) during the run."""
    rss_mib: float | None
    """Peak RSS over the RSS at the start of the run; None where /proc does not tell."""
    planted: int
    removed: int

    @property
    def scaled_rows(self) -> int:
        return self.train_rows if self.series == "train" else self.eval_rows


def bench_decontamination(
    train_rows: int = 5000,
    eval_rows: int = 500,
    scales: tuple[int, ...] = (1, 2, 4, 8),
    seed: int = 0,
) -> list[ScalePoint]:
    """Both series, the training one first; raises RuntimeError when a run does not remove
    exactly the planted rows."""
    rng = random.Random(seed)
    # Random words from a 2,000-word vocabulary: two unrelated rows share no 13-gram, so every
    # removal is a planted one.
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(2000)]
    points = []
    with tempfile.TemporaryDirectory(prefix="olmorl-bench-decon-") as tmp:
        root = Path(tmp)
        # Imports and first-call costs, so they do not land in the first size's time.
        _run(*_write_sets(root / "warm", 50, 10, vocab, rng)[:2])
        for series in ("train", "eval"):
            for scale in scales:
                n_train = train_rows * (scale if series == "train" else 1)
                n_eval = eval_rows * (scale if series == "eval" else 1)
                where = root / f"{series}-{scale}"
                train, against, planted = _write_sets(where, n_train, n_eval, vocab, rng)
                seconds, rss, report = _run(train, against)
                tracemalloc.start()
                try:
                    _run(train, against)
                    heap = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
                shutil.rmtree(where)
                removed = report["files"][str(train)]["removed_rows"]
                if removed != planted:
                    raise RuntimeError(
                        f"decontamination bench ({series} x{scale}): removed rows {removed[:10]}, "
                        f"planted {planted[:10]} ({len(removed)} against {len(planted)})"
                    )
                points.append(
                    ScalePoint(
                        series=series,
                        scale=scale,
                        train_rows=n_train,
                        eval_rows=n_eval,
                        seconds=seconds,
                        heap_mib=heap / MIB,
                        rss_mib=rss,
                        planted=len(planted),
                        removed=len(removed),
                    )
                )
    return points


def _run(train: Path, against: Path) -> tuple[float, float | None, dict]:
    """Seconds, peak RSS growth (MiB) and the report of one run, with outputs in a fresh
    directory beside `train`."""
    out = Path(tempfile.mkdtemp(dir=train.parent))
    gc.collect()  # garbage of the previous run would otherwise blur the RSS baseline
    before = _reset_peak_rss()
    started = time.perf_counter()
    report = decontaminate([str(train)], [str(against)], out, progress=False)
    seconds = time.perf_counter() - started
    peak = _status_bytes("VmHWM")
    return seconds, None if before is None or peak is None else (peak - before) / MIB, report


def _write_sets(
    where: Path, n_train: int, n_eval: int, vocab: list[str], rng: random.Random
) -> tuple[Path, Path, list[int]]:
    """A training and an evaluation JSONL file, and the 1-based training rows that copy an
    evaluation question (1 in 100 rows, at most one per evaluation row)."""
    where.mkdir(parents=True)
    questions = [_text(vocab, rng) for _ in range(n_eval)]
    planted = sorted(rng.sample(range(n_train), min(n_eval, max(1, n_train // 100))))
    copied = iter(rng.sample(questions, len(planted)))
    train, against = where / "train.jsonl", where / "eval.jsonl"
    with train.open("w") as f:
        chosen = set(planted)
        for i in range(n_train):
            question = next(copied) if i in chosen else _text(vocab, rng)
            f.write(json.dumps(_chat(question, _text(vocab, rng))) + "\n")
    against.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q}]}) + "\n" for q in questions
        )
    )
    return train, against, [i + 1 for i in planted]


def _text(vocab: list[str], rng: random.Random) -> str:
    return " ".join(rng.choices(vocab, k=rng.randint(50, 100))) + "."


def _chat(question: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def _reset_peak_rss() -> int | None:
    """Current RSS in bytes, after resetting the kernel's peak to it (Linux only)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_bytes("VmRSS")


def _status_bytes(field: str) -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def format_scaling(points: list[ScalePoint]) -> str:
    """One line per size; ratios are to the first size of the same series, so linear growth
    reads as ratios equal to the scales."""
    header = (
        f"{'series':<6} {'scale':>5} {'train rows':>10} {'eval rows':>9} {'seconds':>8} "
        f"{'s/1k rows':>9} {'heap MiB':>8} {'rss MiB':>8} {'time x':>6} {'heap x':>6} "
        f"{'removed':>7}"
    )
    lines = [header]
    first: dict[str, ScalePoint] = {}
    for p in points:
        base = first.setdefault(p.series, p)
        rss = "-" if p.rss_mib is None else f"{p.rss_mib:.1f}"
        lines.append(
            f"{p.series:<6} {p.scale:>5} {p.train_rows:>10} {p.eval_rows:>9} {p.seconds:>8.2f} "
            f"{1000 * p.seconds / p.scaled_rows:>9.3f} {p.heap_mib:>8.1f} {rss:>8} "
            f"{p.seconds / base.seconds:>6.2f} {p.heap_mib / base.heap_mib:>6.2f} "
            f"{p.removed:>3}/{p.planted:<3}"
        )
    return "\n".join(lines)

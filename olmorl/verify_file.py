"""`olmorl verify`: score a JSONL file of responses with the verifiers each row names.

Each output row is the input row with `score` and `reason` added; the summary gives, per
verifier, the row count, mean score and the count of each reason.
"""

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from olmorl.io import atomic_write_text


class VerifyInputError(ValueError):
    """The input file or one of its rows cannot be scored; the message names file and row."""


def verify_file(
    path: Path, out: Path | None = None, options: Mapping[str, Mapping[str, Any]] | None = None
) -> str:
    """Scores every row; `options` holds each verifier's options by name (as in a recipe)."""
    rows = _read_rows(path)
    results, stats = asyncio.run(_score_rows(rows, path, options or {}))
    if out is not None:
        scored = [{**row, "score": r.score, "reason": _reason(r)} for row, r in zip(rows, results)]
        atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in scored))
    return _summary(results, stats)


def _read_rows(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise VerifyInputError(f"{path}: cannot read: {e.strerror}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise VerifyInputError(f"{path} row {number}: not JSON: {e.msg}") from None
        missing = [k for k in ("dataset", "ground_truth", "response") if k not in row]
        if missing:
            raise VerifyInputError(f"{path} row {number}: missing field '{missing[0]}'")
        rows.append(row)
    return rows


async def _score_rows(
    rows: list[dict], path: Path, options: Mapping[str, Mapping[str, Any]]
) -> tuple[list, dict]:
    from tqdm import tqdm

    from verifiers import build_verifier
    from verifiers.options import did_you_mean
    from verifiers.scoring import pair_labels
    from verifiers.service import RewardService

    verifiers = {}
    try:
        for number, row in enumerate(rows, start=1):
            try:
                for name, _ in pair_labels(row["dataset"], row["ground_truth"]):
                    if name not in verifiers:
                        verifiers[name] = build_verifier(name, options.get(name))
            except ValueError as e:
                raise VerifyInputError(f"{path} row {number}: {e}") from None
        unused = sorted(set(options) - set(verifiers))
        if unused:
            raise VerifyInputError(
                f"options given for verifier {unused[0]!r}, which no row of {path} names "
                f"(rows name: {', '.join(sorted(verifiers))}){did_you_mean(unused[0], verifiers)}"
            )
        # The service's limits, timeouts and cache, as in training, so a file scores as RL would.
        service = RewardService(verifiers)
        bar = tqdm(total=len(rows), desc="verify", unit="row", disable=len(rows) < 50)

        async def score(row: dict) -> "RowScore":  # noqa: F821
            result = await service.score(row, str(row["response"]))
            bar.update()
            return result

        results = await asyncio.gather(*(score(row) for row in rows))
        bar.close()
        return results, service.take_stats()
    finally:
        for verifier in verifiers.values():
            verifier.close()


def _reason(result) -> str:
    """One verifier: its reason; several: `name:reason` pairs."""
    if len(result.reasons) == 1:
        return next(iter(result.reasons.values()))
    return ",".join(f"{name}:{reason}" for name, reason in result.reasons.items())


def _summary(results, stats) -> str:
    scores: dict[str, list[float]] = defaultdict(list)
    reasons: dict[str, Counter] = defaultdict(Counter)
    for result in results:
        for name, score in result.per_verifier.items():
            scores[name].append(score)
            reasons[name][result.reasons[name]] += 1
    lines = [f"{len(results)} rows scored"]
    for name in sorted(scores):
        detail = ", ".join(f"{r}={c}" for r, c in reasons[name].most_common())
        mean = sum(scores[name]) / len(scores[name])
        lines.append(f"  {name:<12} rows={len(scores[name]):<6} mean={mean:.3f}  ({detail})")
        last_error = stats[name].last_error if name in stats else None
        if last_error:
            lines.append(f"  {'':<12} last error: {last_error}")
    return "\n".join(lines)

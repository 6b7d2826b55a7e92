"""Finding training rows that share long n-grams with evaluation data, and writing clean copies.

Text is every string in a row (chat turns, prompts, responses, `text`; not labels such as the
role, the verifier or the ground truth), lower-cased and split into
words and single punctuation marks. Each evaluation row contributes its n-grams (of `ngram`
tokens; a row shorter than that contributes itself whole); a training row is contaminated when
it holds at least `min_overlap` (default 0.8) of some evaluation row's n-grams. The share, not a
single hit, is what keeps templated sets apart: "What is 7 + 3? Put the final answer in
\\boxed{}." has four 13-grams; "What is 17 + 3? ..." holds one of them (the template and "+ 3"),
"What is 2 * 7 + 3? ..." two.

Memory holds the evaluation index only (hashes of its n-grams); training rows stream past it
once, so time grows linearly with the training data and memory with the evaluation data.
"""

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmorl.data.loading import DataError, rows_as_written
from olmorl.io import atomic_file, atomic_write_text

_TOKEN = re.compile(r"\w+|[^\w\s]")


_NOT_TEXT = frozenset({"role", "dataset", "ground_truth", "id", "source", "forbidden_words"})
"""Row fields that label rather than say something: left out, or a short question's n-grams would
be diluted by its role, verifier name and answer."""


def row_text(value: Any) -> str:
    """Every string inside a row (nested lists and mappings included) but its labels, joined by
    newlines."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "\n".join(row_text(v) for k, v in value.items() if k not in _NOT_TEXT)
    if isinstance(value, Sequence):
        return "\n".join(row_text(v) for v in value)
    return ""


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngram_hashes(tokens: Sequence[str], n: int) -> set[int]:
    # hash() of a string is stable within a process, which is all an index built and probed in
    # one run needs; 64 bits make a chance collision between two n-grams negligible.
    return {hash(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


@dataclass
class EvalIndex:
    """The n-grams of the evaluation rows, and which rows each belongs to."""

    ngram: int
    rows: list[str] = field(default_factory=list)
    """`file row N` of each indexed evaluation row."""
    sizes: list[int] = field(default_factory=list)
    """Distinct n-grams of each evaluation row."""
    owners: dict[int, list[int]] = field(default_factory=dict)
    """n-gram hash -> evaluation rows holding it."""
    lengths: set[int] = field(default_factory=set)
    """Gram lengths in the index: `ngram`, and the lengths of rows shorter than it."""

    def add(self, where: str, text: str) -> None:
        tokens = words(text)
        if not tokens:
            return
        n = min(self.ngram, len(tokens))
        grams = ngram_hashes(tokens, n)
        row = len(self.rows)
        self.rows.append(where)
        self.sizes.append(len(grams))
        self.lengths.add(n)
        for gram in grams:
            self.owners.setdefault(gram, []).append(row)

    def match(self, text: str, min_overlap: float) -> tuple[int, float] | None:
        """The evaluation row this text overlaps most, and the share of its n-grams found, when
        that share is at least `min_overlap`; else None."""
        tokens = words(text)
        hits: Counter[int] = Counter()
        for n in self.lengths:
            for gram in ngram_hashes(tokens, n):
                hits.update(self.owners.get(gram, ()))
        best = max(((hits[row] / self.sizes[row], row) for row in hits), default=None)
        if best is None or best[0] < min_overlap:
            return None
        return best[1], best[0]


def build_index(sources: Iterable[str], ngram: int) -> EvalIndex:
    index = EvalIndex(ngram)
    for source in sources:
        for number, row in enumerate(rows_as_written(source), start=1):
            index.add(f"{source} row {number}", row_text(row))
    if not index.rows:
        raise DataError("the evaluation data have no text to decontaminate against")
    return index


def decontaminate(
    train: Sequence[str],
    against: Sequence[str],
    out_dir: Path,
    ngram: int = 13,
    min_overlap: float = 0.8,
    progress: bool = True,
) -> dict[str, Any]:
    """Writes `out_dir/<stem>.jsonl`, each training file without its contaminated rows, and
    `out_dir/decontamination_report.json`; returns the report (per file: rows, the numbers of
    the removed ones, and the first matches with the evaluation row each overlaps)."""
    from tqdm import tqdm

    if ngram < 1 or not 0 < min_overlap <= 1:
        raise ValueError("ngram must be >= 1 and min_overlap in (0, 1]")
    stems = [Path(source).stem for source in train]
    clashing = sorted({stem for stem in stems if stems.count(stem) > 1})
    if clashing:
        raise DataError(f"training files share the name {', '.join(clashing)}: outputs would clash")
    index = build_index(against, ngram)
    report: dict[str, Any] = {
        "ngram": ngram,
        "min_overlap": min_overlap,
        "eval_rows": len(index.rows),
        "files": {},
    }
    for source, stem in zip(train, stems, strict=True):
        out = out_dir / f"{stem}.jsonl"
        if out.resolve() == Path(source).resolve():
            raise DataError(
                f"{source}: the clean copy would overwrite it; choose another --out-dir"
            )
        rows = rows_as_written(source)
        kept = 0
        removed: list[int] = []
        matches = []
        with atomic_file(out) as tmp, tmp.open("w") as f:
            for number, row in enumerate(
                tqdm(rows, desc=f"decontaminate {stem}", unit="row", disable=not progress), 1
            ):
                found = index.match(row_text(row), min_overlap)
                if found is None:
                    f.write(json.dumps(row) + "\n")
                    kept += 1
                    continue
                removed.append(number)
                if len(matches) < 20:
                    matches.append(
                        {"row": number, "eval": index.rows[found[0]], "overlap": round(found[1], 3)}
                    )
        report["files"][source] = {
            "rows": kept + len(removed),
            "removed": len(removed),
            "removed_rows": removed,
            "clean_copy": str(out),
            "first_matches": matches,
        }
    atomic_write_text(out_dir / "decontamination_report.json", json.dumps(report, indent=1))
    return report

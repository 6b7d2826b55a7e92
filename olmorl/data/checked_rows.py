"""Reading a data file row by row with a check per row, stopping at a bad row or skipping it.

The SFT and DPO loaders share this: the first bad row either stops the run with a DataError that
names the file, the 1-based row (the line number in .jsonl) and the field, or is skipped and
counted under its reason, as `data.on_bad_row` says.
"""

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from olmorl.data.loading import DataError, read_rows
from olmorl.data.rl_rows import RowError, UnknownVerifierError

T = TypeVar("T")


class BadRow(Exception):
    """Raised by a row check; `reason` is the key the row is counted under when skipped.
    With `gather`, a stopping load reads on and reports every such row at the end, so a user
    fixes them all at once (rows naming a verifier olmorl does not have)."""

    def __init__(self, message: str, reason: str, gather: bool = False):
        super().__init__(message)
        self.reason = reason
        self.gather = gather

    @classmethod
    def from_row_error(cls, error: RowError) -> "BadRow":
        """Counted under the offending field with indices elided, e.g. `messages[].role`."""
        reason = re.sub(r"\[\d+\]", "[]", error.field)
        return cls(str(error), reason, gather=isinstance(error, UnknownVerifierError))


def load_checked_rows(
    path: str | Path,
    check: Callable[[Any], T],
    on_bad_row: Literal["stop", "skip"],
    split: str = "train",
) -> tuple[list[T], Counter[str]]:
    """`check(row)` for every row of `path`, and the skipped rows counted per reason.

    `path` is a .jsonl or .json file (read here, one row per line or one JSON array), or
    anything `read_rows` opens (.parquet, a hub name, whose `split` is read). A line that is not
    a JSON object is a bad row with reason `bad_json`.
    """
    if on_bad_row not in ("stop", "skip"):
        raise ValueError(f"on_bad_row must be 'stop' or 'skip', got {on_bad_row!r}")
    items: list[T] = []
    skipped: Counter[str] = Counter()
    gathered: dict[str, list[int]] = {}  # message -> row numbers
    for number, row in _numbered_rows(Path(path), split):
        try:
            if isinstance(row, _NotJson):
                raise BadRow(row.message, "bad_json")
            if not isinstance(row, dict):
                raise BadRow(f"expected a JSON object, got {_kind(row)}", "bad_json")
            items.append(check(row))
        except BadRow as e:
            if on_bad_row == "skip":
                skipped[e.reason] += 1
            elif e.gather:
                gathered.setdefault(str(e), []).append(number)
            else:
                raise DataError(f"{path} row {number}: {e}") from None
    if gathered:
        raise DataError(
            "\n".join(
                f"{path} {_rows_named(numbers)}: {message}" for message, numbers in gathered.items()
            )
        )
    return items, skipped


def _rows_named(numbers: list[int], shown: int = 5) -> str:
    """'row 3', or 'rows 3, 7, 9 and 12 more (15 rows)'."""
    if len(numbers) == 1:
        return f"row {numbers[0]}"
    listed = ", ".join(map(str, numbers[:shown]))
    more = f" and {len(numbers) - shown} more" if len(numbers) > shown else ""
    return f"rows {listed}{more} ({len(numbers)} rows)"


class _NotJson:
    def __init__(self, message: str):
        self.message = message


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _numbered_rows(path: Path, split: str) -> Iterator[tuple[int, Any]]:
    """(1-based row number, parsed row or _NotJson) for each row."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json"):
        yield from enumerate(read_rows(str(path), split), start=1)
        return
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if suffix == ".json":
        # A .json file holds one array of rows, or (as for `datasets`) is JSON lines after all.
        try:
            whole = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            pass
        else:
            yield from enumerate(whole if isinstance(whole, list) else [whole], start=1)
            return
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue  # blank lines are not rows, but keep the numbers equal to line numbers
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                yield number, _NotJson(f"not valid JSON: {e}")

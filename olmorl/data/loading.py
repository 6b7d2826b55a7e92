"""Reads data sets with Hugging Face `datasets` (local JSONL/JSON/Parquet or a hub name).

Problems are reported with the file and the 1-based row, e.g. `train.jsonl row 17: field
'dataset': unknown verifier 'mth'`.
"""

import json
from collections.abc import Iterator
from pathlib import Path

_LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class DataError(ValueError):
    """A data set that cannot be used; the message names the file (and row)."""


def read_rows(source: str, split: str = "train") -> "datasets.Dataset":  # noqa: F821
    """Opens one data source: a local file by extension, otherwise a hub data set name."""
    import datasets

    path = Path(source)
    builder = _LOCAL_FORMATS.get(path.suffix.lower())
    try:
        if builder is not None:
            if not path.is_file():
                raise DataError(f"{source}: no such file")
            if path.suffix.lower() == ".jsonl":
                _check_json_lines(path, source)
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        if path.exists():
            raise DataError(f"{source}: unsupported file type; use .jsonl, .json or .parquet")
        return datasets.load_dataset(source, split=split)
    except DataError:
        raise
    except Exception as e:  # datasets raises many types; keep the cause but name the source
        raise DataError(f"{source}: cannot read: {type(e).__name__}: {e}") from e


def _check_json_lines(path: Path, source: str) -> None:
    """Every non-blank line must be a JSON object: `datasets` would log a traceback instead."""
    for _ in json_lines(path, source):
        pass


def rows_as_written(source: str) -> Iterator[dict]:
    """The rows of a local JSONL file one at a time, exactly as written; any other source as
    `read_rows` gives them. `datasets` gives every row of a JSON file the union of all rows'
    fields (absent ones as None) and one type per field, so a copy written back from it would
    not be the file's rows."""
    path = Path(source)
    if path.suffix.lower() == ".jsonl":
        if not path.is_file():
            raise DataError(f"{source}: no such file")
        return json_lines(path, source)
    return iter(read_rows(source))


def json_lines(path: Path, source: str) -> Iterator[dict]:
    """The JSON object on each non-blank line of `path`; a line that is not one is a DataError
    naming `source` and the row."""
    with path.open(encoding="utf-8") as lines:
        rows = (line for line in lines if line.strip())
        for number, line in enumerate(rows, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{source} row {number}: not JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{source} row {number}: expected a JSON object, got {type(row).__name__}"
                )
            yield row

"""Token arrays for pretraining: one flat array of token ids per source, documents separated by EOS.

`olmorl data tokenize` writes them as `.npy` files (uint16 when the vocabulary allows, else
uint32) beside a `.json` summary (documents, tokens, tokenizer). Pretraining memory-maps them, so
a source larger than memory costs only the pages a step reads. Dolma's arrays are the same flat
layout without the `.npy` header; `open_token_array` reads those as raw uint32 (or the dtype
named). Text sources (.jsonl / .parquet with a `text` field) are tokenized when a run loads them,
which suits small corpora; large ones should be tokenized once with the command.
"""

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from olmorl.data.loading import DataError, read_rows
from olmorl.io import atomic_file, atomic_write_text

TEXT_SUFFIXES = (".jsonl", ".json", ".parquet")
_NPY_MAGIC = b"\x93NUMPY"
_CHECKED_TOKENS = 1 << 20


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def read_documents(source: str, text_field: str = "text") -> Iterator[str]:
    """The `text_field` of every row of a JSONL/JSON/Parquet file; a row without a string there
    is an error naming the file and row."""
    for index, row in enumerate(read_rows(source)):
        text = row.get(text_field)
        if not isinstance(text, str):
            raise DataError(
                f"{source} row {index + 1}: field {text_field!r} must be a string, got "
                f"{type(text).__name__}"
            )
        yield text


def tokenize_documents(
    documents: Iterable[str], encode: Callable[[str], list[int]], eos_id: int, dtype: np.dtype
) -> tuple[np.ndarray, int]:
    """All documents' tokens, each followed by EOS, as one flat array; and the document count."""
    parts: list[np.ndarray] = []
    count = 0
    for text in documents:
        parts.append(np.asarray([*encode(text), eos_id], dtype=dtype))
        count += 1
    tokens = np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
    return tokens, count


def write_token_array(tokens: np.ndarray, out: Path, summary: dict) -> Path:
    """Writes `out` (.npy) and its `.json` summary, each atomically; returns `out`."""
    with atomic_file(out) as tmp, tmp.open("wb") as f:
        np.save(f, tokens, allow_pickle=False)
    atomic_write_text(out.with_suffix(".json"), json.dumps(summary, indent=1))
    return out


def open_token_array(path: str | Path, raw_dtype: str = "uint32") -> np.ndarray:
    """A read-only memory map of a token array: a `.npy` file as saved, or a headerless array of
    `raw_dtype` (as Dolma ships them)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open("rb") as f:
        has_header = f.read(len(_NPY_MAGIC)) == _NPY_MAGIC
    if has_header:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if array.ndim != 1 or array.dtype.kind not in "ui":
            raise DataError(
                f"{path}: expected a flat integer token array, got {array.dtype} of shape "
                f"{array.shape}"
            )
        return array
    dtype = np.dtype(raw_dtype)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty; a token array needs at least one token")
    if path.stat().st_size % dtype.itemsize:
        raise DataError(
            f"{path}: {path.stat().st_size} bytes is not a whole number of {dtype} tokens; "
            "give the source's dtype"
        )
    return np.memmap(path, dtype=dtype, mode="r")


def load_token_source(
    path: str, tokenizer, text_field: str = "text", raw_dtype: str = "uint32"
) -> np.ndarray:
    """A source's tokens: a token array memory-mapped, or a text file tokenized now."""
    if Path(path).suffix.lower() in TEXT_SUFFIXES:
        tokens, _ = tokenize_documents(
            read_documents(path, text_field),
            lambda text: tokenizer.encode(text, add_special_tokens=False),
            tokenizer.eos_token_id,
            token_dtype(len(tokenizer)),
        )
        return tokens
    tokens = open_token_array(path, raw_dtype)
    # The ends only: reading a terabyte source whole before the first step is not affordable.
    ends = np.concatenate([tokens[:_CHECKED_TOKENS], tokens[-_CHECKED_TOKENS:]])
    if len(ends) and int(ends.max()) >= len(tokenizer):
        raise DataError(
            f"{path}: token id {int(ends.max())} is outside the tokenizer's vocabulary of "
            f"{len(tokenizer)}; was it tokenized with another tokenizer?"
        )
    return tokens


def tokenize_files(
    sources: Sequence[str | Path], tokenizer_path: str, out_dir: Path, text_field: str = "text"
) -> Iterator[tuple[str, dict]]:
    """Tokenizes each text source into `out_dir/<stem>.npy` (with a progress bar per source);
    yields (source, its summary) as each is written. Stems must be distinct."""
    from tqdm import tqdm
    from transformers import AutoTokenizer

    stems = [Path(source).stem for source in sources]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise DataError(f"sources share the file name {', '.join(repeated)}: outputs would clash")
    for source, stem in zip(sources, stems, strict=True):
        outputs = {(out_dir / f"{stem}{suffix}").resolve() for suffix in (".npy", ".json")}
        if Path(source).resolve() in outputs:
            raise DataError(f"{source}: tokenizing it into {out_dir} would overwrite it")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    if tokenizer.eos_token_id is None:
        raise DataError(f"{tokenizer_path}: the tokenizer has no EOS token to end documents")
    dtype = token_dtype(len(tokenizer))
    for source, stem in zip(sources, stems, strict=True):
        documents = tqdm(
            read_documents(str(source), text_field), desc=f"tokenize {stem}", unit="doc"
        )
        tokens, count = tokenize_documents(
            documents,
            lambda text: tokenizer.encode(text, add_special_tokens=False),
            tokenizer.eos_token_id,
            dtype,
        )
        out = out_dir / f"{stem}.npy"
        summary = {
            "source": str(source),
            "array": str(out),
            "documents": count,
            "tokens": len(tokens),
            "dtype": str(dtype),
            "tokenizer": tokenizer_path,
            "eos_token_id": tokenizer.eos_token_id,
        }
        write_token_array(tokens, out, summary)
        yield str(source), summary

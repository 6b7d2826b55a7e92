"""Reference-model log-probs for DPO, computed once and kept on disk for later runs.

The key is a digest of the model's files (and compute dtype) and of the tokenized documents
themselves, so a changed chat template, length limit or skipped row is a new key, never a stale
hit. A model given by hub name (not a local directory) is keyed by its name.
"""

import hashlib
import os
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from olmorl.config import ModelConfig


def model_digest(model: ModelConfig) -> str:
    """sha256 over the names and contents of the checkpoint's files, and the compute dtype."""
    digest = hashlib.sha256(f"dtype={model.dtype}\n".encode())
    root = Path(model.path)
    if not root.is_dir():
        digest.update(f"hub:{model.path}".encode())
        return digest.hexdigest()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(root)}\n".encode())
        with file.open("rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def documents_key(
    model_hash: str, documents: Sequence[tuple[Sequence[int], Sequence[bool]]]
) -> str:
    """The cache key of `documents` (token ids and loss masks, in order) under a model."""
    digest = hashlib.sha256(model_hash.encode())
    for ids, mask in documents:
        digest.update(torch.tensor(list(ids), dtype=torch.int64).numpy().tobytes())
        digest.update(bytes(bytearray(bool(m) for m in mask)))
        digest.update(b"|")
    return digest.hexdigest()


def load_cached(cache_dir: Path, key: str) -> torch.Tensor | None:
    """The cached summed log-probs for `key` (# [D] float64), or None."""
    path = cache_dir / f"{key}.pt"
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        # A damaged cache file is a miss: recomputed and rewritten.
        return None


def store(cache_dir: Path, key: str, logps: torch.Tensor) -> Path:
    """Writes the cache entry atomically (a concurrent reader never sees half a file)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(logps, tmp)
        os.replace(tmp, cache_dir / f"{key}.pt")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return cache_dir / f"{key}.pt"

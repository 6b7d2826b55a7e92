"""Pretraining windows as the learner's packed rows.

A window is `seq_len` consecutive tokens of a source. Several windows share a row when the
learner's micro-batch holds more than one; positions restart at each window, so attention never
crosses from one window to the next (see `PackedRow.model_inputs`). With `document_mask`, a window
is further split after every EOS: each document gets positions from 0 and attends only to itself,
and its first token, which nothing inside it predicts, leaves the loss. Without it, documents in a
window see each other, as in plain causal-LM pretraining. Each window's first token is never
trained (nothing before it in the row is its context).
"""

from collections.abc import Sequence

import numpy as np

from olmorl.algo.packing import PackedRow, concatenate_documents
from olmorl.data.sft_rows import conversation_document


def window_documents(window: np.ndarray, eos_id: int, document_mask: bool) -> list[np.ndarray]:
    """The window whole, or split after each EOS (the pieces cover the window in order)."""
    if not document_mask:
        return [window]
    ends = np.flatnonzero(window[:-1] == eos_id) + 1  # a document starts after each EOS
    return np.split(window, ends)


def window_rows(
    windows: Sequence[np.ndarray], tokens_per_row: int, eos_id: int, document_mask: bool
) -> list[PackedRow]:
    """`windows` in order, as many per row as `tokens_per_row` holds (at least one)."""
    if not windows:
        raise ValueError("no windows to pack")
    per_row = max(1, tokens_per_row // len(windows[0]))
    rows = []
    numbered = 0  # documents are numbered across rows, in order
    for start in range(0, len(windows), per_row):
        docs = [
            conversation_document(piece.astype(np.int64), np.arange(len(piece)) > 0)
            for window in windows[start : start + per_row]
            for piece in window_documents(window, eos_id, document_mask)
        ]
        rows.append(concatenate_documents(docs, tuple(range(numbered, numbered + len(docs)))))
        numbered += len(docs)
    return rows

"""Pretraining windows as packed rows: as many whole windows per row as fit, positions restarting
at each window (or, with document masking, after each EOS), nothing trained on a token that
nothing before it in its document predicts, and the rows' tokens exactly the windows in order."""

import numpy as np
import pytest
import torch

from olmorl.data.token_rows import window_documents, window_rows

EOS = 3
SEQ_LEN = 8


def make_windows(n: int, seed: int = 0, eos_every: int | None = None) -> list[np.ndarray]:
    """n windows of uint16 ids (some above int16's range), with an EOS every `eos_every` tokens
    of the stream when given."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(EOS + 1, 65_535, size=n * SEQ_LEN).astype(np.uint16)
    if eos_every:
        tokens[eos_every - 1 :: eos_every] = EOS
    return list(tokens.reshape(n, SEQ_LEN))


def pieces_of(row) -> list[torch.Tensor]:
    return list(row.input_ids.split(list(row.seq_lens)))


@pytest.mark.parametrize(
    ("tokens_per_row", "windows_per_row"), [(8, 1), (20, 2), (24, 3), (4, 1), (64, 7)]
)
def test_rows_hold_as_many_whole_windows_as_fit(tokens_per_row, windows_per_row):
    windows = make_windows(7)
    rows = window_rows(windows, tokens_per_row, EOS, document_mask=False)
    expected = [min(windows_per_row, 7 - i) for i in range(0, 7, windows_per_row)]
    assert [len(row.seq_lens) for row in rows] == expected
    assert all(set(row.seq_lens) == {SEQ_LEN} for row in rows)
    assert [len(row) for row in rows] == [n * SEQ_LEN for n in expected]


@pytest.mark.parametrize("document_mask", [False, True])
def test_rows_hold_the_windows_tokens_in_order(document_mask):
    windows = make_windows(5, eos_every=5)
    rows = window_rows(windows, 16, EOS, document_mask)
    got = torch.cat([row.input_ids for row in rows])
    assert got.dtype == torch.int64
    assert got.tolist() == np.concatenate(windows).astype(np.int64).tolist()


def test_without_document_mask_positions_restart_only_at_each_window():
    windows = make_windows(5, eos_every=3)  # EOS inside windows: no effect on positions
    rows = window_rows(windows, 16, EOS, document_mask=False)
    for row in rows:
        expected = torch.arange(SEQ_LEN).repeat(len(row.seq_lens))
        assert torch.equal(row.position_ids, expected)
        # Only each window's first token is out of the loss.
        assert torch.equal(row.loss_mask, expected > 0)


def test_window_documents_splits_after_each_eos():
    window = np.array([5, EOS, 6, 7, EOS, EOS, 8, 9])
    pieces = window_documents(window, EOS, document_mask=True)
    assert [p.tolist() for p in pieces] == [[5, EOS], [6, 7, EOS], [EOS], [8, 9]]
    # An EOS last does not leave an empty piece; an EOS first is a piece of its own.
    assert [p.tolist() for p in window_documents(np.array([1, 2, EOS]), EOS, True)] == [[1, 2, EOS]]
    assert [p.tolist() for p in window_documents(np.array([EOS, 1, 2]), EOS, True)] == [
        [EOS],
        [1, 2],
    ]
    assert [p.tolist() for p in window_documents(window, EOS, document_mask=False)] == [
        window.tolist()
    ]


def test_with_document_mask_each_document_restarts_positions_and_leaves_its_first_token_out():
    windows = [
        np.array([5, EOS, 6, 7, EOS, EOS, 8, 9], dtype=np.uint16),
        np.array([10, 11, 12, 13, 14, 15, 16, EOS], dtype=np.uint16),
        np.array([EOS, 20, 21, EOS, 22, 23, 24, 25], dtype=np.uint16),
    ]
    (row,) = window_rows(windows, 24, EOS, document_mask=True)
    assert row.seq_lens == (2, 3, 1, 2, 8, 1, 3, 4)
    assert [p.tolist() for p in pieces_of(row)] == [
        [5, EOS], [6, 7, EOS], [EOS], [8, 9],
        [10, 11, 12, 13, 14, 15, 16, EOS],
        [EOS], [20, 21, EOS], [22, 23, 24, 25],
    ]  # fmt: skip
    expected_positions = torch.cat([torch.arange(n) for n in row.seq_lens])
    assert torch.equal(row.position_ids, expected_positions)
    # A token after an EOS starts a document: it is out of the loss; so is each window's first.
    after_eos = torch.tensor([False, *[int(t) == EOS for t in row.input_ids[:-1]]])
    window_start = torch.arange(len(row)) % SEQ_LEN == 0
    assert torch.equal(row.loss_mask, ~(after_eos | window_start))
    assert row.num_loss_tokens == len(row) - len(row.seq_lens)


def test_document_indices_run_consecutively_across_rows():
    windows = make_windows(7, eos_every=3)
    rows = window_rows(windows, 16, EOS, document_mask=True)
    indices = [i for row in rows for i in row.trajectory_indices]
    assert indices == list(range(len(indices)))
    assert all(len(row.trajectory_indices) == len(row.seq_lens) for row in rows)
    assert len(indices) > len(windows)  # the windows were split

    plain = window_rows(windows, 16, EOS, document_mask=False)
    assert [row.trajectory_indices for row in plain] == [(0, 1), (2, 3), (4, 5), (6,)]


def test_no_windows_is_an_error():
    with pytest.raises(ValueError, match="no windows"):
        window_rows([], 16, EOS, document_mask=False)

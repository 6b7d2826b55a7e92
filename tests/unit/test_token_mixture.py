"""The pretraining mixture stream: every block of windows holds each source's exact share, each
source is read a whole seeded permutation per epoch, window k is a pure function of the stream's
inputs (so a resumed run reads what an uninterrupted one would), and bad mixes are refused naming
the source."""

import random
from collections import Counter
from itertools import pairwise

import pytest

from olmorl.data.token_mixture import BLOCK_WINDOWS, MixtureStream, WindowRef, apportion

WEIGHTS = (0.7, 0.2, 0.1)
COUNTS = (50, 300, 7)  # source 2 runs through many epochs per block, source 1 under one


def stream(seed: int = 0, counts=COUNTS, weights=WEIGHTS, names=()) -> MixtureStream:
    return MixtureStream(tuple(counts), tuple(weights), seed, tuple(names))


def sources_of(refs: list[WindowRef], num_sources: int = 3) -> list[int]:
    counts = Counter(ref.source for ref in refs)
    return [counts[s] for s in range(num_sources)]


def test_apportion_by_largest_remainder():
    # exact 716.8, 204.8, 102.4: the two .8 remainders get the 2 windows left over.
    assert apportion([0.7, 0.2, 0.1], 1024) == [717, 205, 102]
    assert apportion([1, 1, 1], 10) == [4, 3, 3]  # a tie goes to the earlier source
    assert apportion([1, 3], 8) == [2, 6]  # unnormalised weights
    # exact 1.5, .75, .75: the two windows left after the floors go to the .75s, not the .5.
    assert apportion([2, 1, 1], 3) == [1, 1, 1]


def test_apportion_sums_to_total_and_rounds_each_share_by_remainder():
    rng = random.Random(0)
    for _ in range(200):
        weights = [rng.uniform(0.01, 5) for _ in range(rng.randint(1, 7))]
        total = rng.randint(0, 3000)
        shares = apportion(weights, total)
        exact = [total * w / sum(weights) for w in weights]
        assert sum(shares) == total
        for share, x in zip(shares, exact, strict=True):
            assert share - 1 < x < share + 1
        # Largest remainder: every source rounded up had a remainder at least any rounded down's.
        up = [x - int(x) for s, x in zip(shares, exact, strict=True) if s > int(x)]
        down = [x - int(x) for s, x in zip(shares, exact, strict=True) if s == int(x)]
        if up and down:
            assert min(up) >= max(down)


def test_every_block_holds_exactly_each_sources_share():
    mix = stream()
    assert mix.block_shares == (717, 205, 102)
    for block in range(3):
        refs = mix.windows(block * BLOCK_WINDOWS, BLOCK_WINDOWS)
        assert sources_of(refs) == [717, 205, 102], f"block {block}"
    # The sources are interleaved, not laid out in runs: the first tenth of a block already mixes.
    assert all(n > 0 for n in sources_of(mix.windows(0, BLOCK_WINDOWS // 10)))


def test_window_refs_stay_inside_their_source():
    mix = stream()
    for ref in mix.windows(0, 2 * BLOCK_WINDOWS):
        assert 0 <= ref.window < COUNTS[ref.source]


def test_streams_built_alike_read_the_same_windows():
    assert stream(seed=3).windows(0, 2 * BLOCK_WINDOWS + 100) == stream(seed=3).windows(
        0, 2 * BLOCK_WINDOWS + 100
    )


def test_window_k_computed_directly_equals_its_place_in_a_sequential_walk():
    k = 4 * BLOCK_WINDOWS + 517
    direct = stream(seed=5).window(k)  # before anything else of this stream is computed
    walk = stream(seed=5).windows(0, k + 1)
    assert walk[k] == direct
    # A run resumed at any window reads exactly the rest of the uninterrupted run's windows.
    resumed_at = 2 * BLOCK_WINDOWS - 13
    assert stream(seed=5).windows(resumed_at, 300) == walk[resumed_at : resumed_at + 300]


def test_each_epoch_of_a_source_is_a_permutation_and_epochs_differ():
    refs = stream(seed=1).windows(0, 3 * BLOCK_WINDOWS)
    for source, count in enumerate(COUNTS):
        read = [ref.window for ref in refs if ref.source == source]
        epochs = [read[i : i + count] for i in range(0, len(read) - count + 1, count)]
        for epoch in epochs:
            assert sorted(epoch) == list(range(count)), f"source {source}"
        if source == 0:  # 50 windows: ~43 epochs; a repeated order would be no shuffle
            assert len(epochs) > 40
            assert all(a != b for a, b in pairwise(epochs))
        if source == 2:
            assert len({tuple(e) for e in epochs}) > len(epochs) // 2
    # Source 1 (300 windows) reads 615 in three blocks: two whole epochs, then a third begun with
    # no window it already read in that epoch.
    read = [ref.window for ref in refs if ref.source == 1]
    assert len(read) == 615
    assert len(set(read[600:])) == 15


def test_the_first_epoch_is_not_the_identity_order():
    read = [ref.window for ref in stream().windows(0, BLOCK_WINDOWS) if ref.source == 1]
    assert read != sorted(read)


@pytest.mark.parametrize("n", [0, 1, 500, BLOCK_WINDOWS, BLOCK_WINDOWS + 1, 3 * BLOCK_WINDOWS + 77])
def test_source_counts_equal_counting_the_windows(n):
    mix = stream(seed=2)
    assert mix.source_counts(n) == sources_of(mix.windows(0, n))


def test_another_seed_reads_another_order_with_the_same_mix():
    a, b = stream(seed=0).windows(0, BLOCK_WINDOWS), stream(seed=1).windows(0, BLOCK_WINDOWS)
    assert [r.source for r in a] != [r.source for r in b]
    assert [r.window for r in a if r.source == 1] != [r.window for r in b if r.source == 1]
    assert sources_of(a) == sources_of(b)


def test_single_source_reads_every_window_once_per_epoch():
    refs = stream(counts=(1000,), weights=(1.0,)).windows(0, 2000)
    assert {r.source for r in refs} == {0}
    assert sorted(r.window for r in refs[:1000]) == list(range(1000))
    assert sorted(r.window for r in refs[1000:]) == list(range(1000))
    assert [r.window for r in refs[:1000]] != [r.window for r in refs[1000:]]


@pytest.mark.parametrize("weight", [0.0, -1.0])
def test_non_positive_weight_is_refused_naming_the_source(weight):
    with pytest.raises(ValueError, match=rf"^code: weight must be positive, got {weight}"):
        stream(weights=(0.7, weight, 0.1), names=("web", "code", "math"))


def test_source_shorter_than_a_window_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"^math: shorter than one window"):
        stream(counts=(50, 300, 0), names=("web", "code", "math"))


def test_weight_too_small_for_a_share_of_the_block_is_refused_naming_the_source():
    with pytest.raises(
        ValueError, match=rf"^rare: weight too small for a share of {BLOCK_WINDOWS}"
    ):
        stream(counts=(50, 7), weights=(1.0, 1e-4), names=("web", "rare"))
    # Unnamed sources are called by their index.
    with pytest.raises(ValueError, match=r"^source 1: weight too small"):
        stream(counts=(50, 7), weights=(1.0, 1e-4))
    # Just enough for one window a block is accepted.
    assert stream(counts=(50, 7), weights=(1.0, 1.5 / BLOCK_WINDOWS)).block_shares[1] == 1


def test_mismatched_lengths_and_negative_window_are_refused():
    with pytest.raises(ValueError, match="one entry per source"):
        MixtureStream((5, 5), (1.0,), 0)
    with pytest.raises(ValueError, match="one entry per source"):
        MixtureStream((5,), (1.0,), 0, ("a", "b"))
    with pytest.raises(ValueError, match="non-negative"):
        stream().window(-1)

"""Benchmarks report each side as a ratio to the first row, the baseline."""

from olmorl.bench.table import BenchResult, format_table


def test_ratios_are_against_the_first_row():
    table = format_table(
        [BenchResult("vllm", 4000, 2.0), BenchResult("olmorl", 3000, 2.0)], unit="tokens"
    )
    header, vllm, olmorl = table.splitlines()
    assert header.split()[-2:] == ["tokens/s", "ratio"]
    assert vllm.split()[-2:] == ["2000.0", "1.00"]
    assert olmorl.split()[-2:] == ["1500.0", "0.75"]


def test_long_tail_lengths_stay_in_range_and_have_a_tail():
    from olmorl.bench.rl import long_tail_lengths

    lengths = long_tail_lengths(2000, shortest=16, longest=512, alpha=1.2, seed=0)
    assert min(lengths) >= 16 and max(lengths) == 512
    ordered = sorted(lengths)
    median, p99 = ordered[1000], ordered[1980]
    assert p99 > 8 * median  # a few responses are far longer than the typical one
    assert lengths == long_tail_lengths(2000, shortest=16, longest=512, alpha=1.2, seed=0)

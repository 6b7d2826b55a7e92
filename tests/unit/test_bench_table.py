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

"""The rollout benchmark reports each side as a ratio to vLLM alone, the first row."""

from olmorl.bench.rollout import RolloutBenchResult, format_table


def test_ratios_are_against_the_first_row():
    table = format_table(
        [RolloutBenchResult("vllm", 4000, 2.0), RolloutBenchResult("olmorl", 3000, 2.0)]
    )
    vllm, olmorl = table.splitlines()[1:]
    assert vllm.split()[-2:] == ["2000", "1.00"]
    assert olmorl.split()[-2:] == ["1500", "0.75"]

"""The README's "Write your own verifier" example works as written."""

import asyncio
import re
from pathlib import Path

from verifiers import build_verifier, score_row

README = Path(__file__).parents[2] / "README.md"


def test_readme_example_registers_and_scores():
    section = README.read_text().split("## Write your own verifier", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 -- running our own README is the test

    verifier = build_verifier("exact_match", {"ignore_case": True})
    result = asyncio.run(verifier("  Paris ", "paris", {}))
    assert (result.score, result.reason) == (1.0, "correct")
    row = {"dataset": ["exact_match", "contains"], "ground_truth": ["t1", "t1"]}
    assert (
        asyncio.run(
            score_row(row, "t1", {"exact_match": verifier, "contains": build_verifier("contains")})
        ).score
        == 2.0
    )
    strict = build_verifier("exact_match")
    assert asyncio.run(strict("Paris", "paris", {})).score == 0.0

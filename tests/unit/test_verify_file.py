"""`olmorl verify`: rows come back with score and reason, the summary counts per verifier."""

import json

from typer.testing import CliRunner

from olmorl.cli import app

ROWS = [
    {"dataset": "math", "ground_truth": "\\frac{1}{2}", "response": "so \\boxed{0.5}", "id": 1},
    {"dataset": "math", "ground_truth": "3", "response": "no idea"},
    {
        "dataset": ["math", "contains"],
        "ground_truth": ["3", "t1"],
        "response": "t1, and \\boxed{3}",
    },
]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scores_rows_and_summarises(tmp_path):
    out = tmp_path / "scored.jsonl"
    result = CliRunner().invoke(
        app, ["verify", str(write(tmp_path / "in.jsonl", ROWS)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["score"] for r in scored] == [1.0, 0.0, 2.0]  # a two-verifier row sums its scores
    assert [r["reason"] for r in scored] == [
        "correct",
        "no_answer",
        "math:correct,contains:correct",
    ]
    assert scored[0]["id"] == 1  # input fields are kept
    assert "math         rows=3      mean=0.667" in result.output
    assert "contains     rows=1      mean=1.000" in result.output


def test_bad_rows_name_file_and_row(tmp_path):
    bad = write(
        tmp_path / "bad.jsonl",
        [ROWS[0], {"dataset": "maths", "ground_truth": "1", "response": "1"}],
    )
    result = CliRunner().invoke(app, ["verify", str(bad)])
    assert result.exit_code == 2
    assert f"{bad} row 2:" in result.output and "'maths'" in result.output
    missing = write(tmp_path / "missing.jsonl", [{"dataset": "math", "ground_truth": "1"}])
    result = CliRunner().invoke(app, ["verify", str(missing)])
    assert result.exit_code == 2 and f"{missing} row 1: missing field 'response'" in result.output


def test_a_verifier_error_scores_zero_and_the_summary_says_why(tmp_path):
    rows = [{"dataset": "math", "ground_truth": {"not": "a string"}, "response": "\\boxed{1}"}]
    out = tmp_path / "scored.jsonl"
    result = CliRunner().invoke(
        app, ["verify", str(write(tmp_path / "in.jsonl", rows)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    (scored,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (scored["score"], scored["reason"]) == (0.0, "error:TypeError")
    assert "last error: TypeError: " in result.output and "math label" in result.output

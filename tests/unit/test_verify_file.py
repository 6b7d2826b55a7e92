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


def test_verifier_options_from_the_command_line(tmp_path):
    rows = write(tmp_path / "in.jsonl", [ROWS[0] | {"response": "so 0.5"}])
    default = CliRunner().invoke(app, ["verify", str(rows)])
    assert "mean=0.000" in default.output  # the last number is not an answer source by default
    widened = CliRunner().invoke(
        app, ["verify", str(rows), "-o", "math.answer_sources=[boxed, last_number]"]
    )
    assert widened.exit_code == 0 and "mean=1.000" in widened.output
    typo = CliRunner().invoke(app, ["verify", str(rows), "-o", "maths.timeout_s=1"])
    assert typo.exit_code == 2 and "did you mean 'math'?" in typo.output
    bad = CliRunner().invoke(app, ["verify", str(rows), "-o", "math.timeout_s=-1"])
    assert bad.exit_code == 2 and "timeout_s must be positive" in bad.output


def test_all_four_families_in_one_file(tmp_path, judge):
    judge.reply('{"score": 8}')
    ifeval_label = json.dumps(
        [{"instruction_id": ["punctuation:no_comma", "change_case:english_lowercase"]}]
    )
    rows = [
        {"dataset": "math", "ground_truth": "\\frac{3}{4}", "response": "\\boxed{0.75}"},
        {
            "dataset": "code",
            "ground_truth": json.dumps(["assert add(2, 2) == 4", "assert add(0, 5) == 5"]),
            "response": "```python\ndef add(a, b):\n    return a + b\n```",
        },
        {
            "dataset": "ifeval",
            "ground_truth": ifeval_label,
            "response": "<think>Hmm, OK</think>i think the answer is no",
        },
        {"dataset": "ifeval", "ground_truth": ifeval_label, "response": "Yes, Sir"},
        {
            "dataset": "judge",
            "ground_truth": "Paris",
            "messages": [{"role": "user", "content": "Capital of France?"}],
            "response": "It is Paris.",
        },
    ]
    out = tmp_path / "scored.jsonl"
    result = CliRunner().invoke(
        app,
        ["verify", str(write(tmp_path / "in.jsonl", rows)), "--out", str(out)]
        + ["-o", f"judge.url={judge.url}", "-o", "judge.backoff_s=0.01"],
    )
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["score"], r["reason"]) for r in scored] == [
        (1.0, "correct"),
        (1.0, "all_passed"),
        (1.0, "correct"),  # the comma in the thinking does not count
        (0.0, "failed:punctuation:no_comma,change_case:english_lowercase"),
        (7 / 9, "judged"),
    ]
    assert "Paris" in judge.prompt() and "Capital of France?" in judge.prompt()
    for name in ("math", "code", "ifeval", "judge"):
        assert f"  {name:<12} rows=" in result.output, name

"""Fuzzing the two front doors, `olmorl rl --dry-run` (configs) and `olmorl data check` (rows), with
hundreds of generated bad inputs: each must end in a one-line error naming the key, file or row
(exit code 2), never a traceback."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from olmorl.cli import app

REPO = Path(__file__).parents[2]
RECIPE = yaml.safe_load((REPO / "recipes" / "tiny" / "rl_mixed.yaml").read_text())
# Values of the wrong kind for almost any key: containers, strings, negatives, nulls, huge.
BAD_VALUES = [None, "", "abc", -1, -0.5, 0, 1e309, True, [], [1, "x"], {}, {"k": 1}, "1e-3x"]
GOOD_ROW = {
    "messages": [{"role": "user", "content": "What is 1 + 1?"}],
    "ground_truth": "2",
    "dataset": "math",
}


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        keys += _leaves(value, f"{path}.") if isinstance(value, dict) and value else [path]
    return keys


def _set(tree: dict, dotted: str, value) -> dict:
    tree = json.loads(json.dumps(tree))
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[leaf] = value
    return tree


def _bad_configs() -> list[tuple[str, dict]]:
    cases = []
    for key in _leaves(RECIPE):
        for value in BAD_VALUES:
            cases.append((f"{key}={value!r}", _set(RECIPE, key, value)))
        section, _, _ = key.rpartition(".")
        if section:  # a misspelt key beside a real one
            cases.append((f"{key}x", _set(RECIPE, f"{key}x", 1)))
    for section in RECIPE:
        cases.append((f"{section}=list", {**RECIPE, section: [1, 2]}))
    cases.append(("no model", {k: v for k, v in RECIPE.items() if k != "model"}))
    cases.append(("unknown section", {**RECIPE, "optimiser": {"lr": 1}}))
    return cases


def _is_valid(config: dict) -> bool:
    """Some mutations are still valid (e.g. max_num_seqs=True is rejected, 0.5 may not be)."""
    from olmorl.config import ConfigError, RLConfig, load_config

    path = Path("/tmp/olmorl-fuzz-probe.yaml")
    path.write_text(yaml.safe_dump(config))
    try:
        load_config(RLConfig, path, [])
    except ConfigError:
        return False
    return True


CONFIG_CASES = _bad_configs()


def test_there_are_enough_cases():
    assert len(CONFIG_CASES) >= 200
    assert len(CONFIG_CASES) + len(ROW_CASES) >= 250


@pytest.mark.parametrize(("label", "config"), CONFIG_CASES, ids=[c[0][:60] for c in CONFIG_CASES])
def test_bad_config_is_one_clear_line(tmp_path, label, config):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["rl", str(path), "--dry-run", f"run.output_dir={tmp_path}"])
    assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError)
    if result.exit_code == 0:  # the mutation happened to be valid
        assert _is_valid(config), label
        return
    assert result.exit_code == 2, (label, result.output, result.exception)
    message = result.output.strip()
    assert "recipe.yaml" in message or "override" in message, (label, message)


def _bad_rows() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    for field in GOOD_ROW:
        cases.append((f"no {field}", {k: v for k, v in GOOD_ROW.items() if k != field}))
        # Any string or number is a label; for the other fields nearly nothing fits.
        values = [None, True, [], {}, {"k": 1}] if field == "ground_truth" else BAD_VALUES
        for value in values:
            cases.append((f"{field}={value!r}", {**GOOD_ROW, field: value}))
    for message in [{}, {"role": "user"}, {"content": "x"}, {"role": "robot", "content": "x"},
                    {"role": "user", "content": 5}, "hello", {"role": "assistant", "content": "x"},
                    {"role": "user", "content": "   "}]:  # fmt: skip
        cases.append((f"message {message!r}", {**GOOD_ROW, "messages": [message]}))
    cases.append(("unknown verifier", {**GOOD_ROW, "dataset": "mathh"}))
    cases.append(
        ("labels mismatch", {**GOOD_ROW, "dataset": ["math", "code"], "ground_truth": ["1"] * 3})
    )
    cases.append(("a list", [GOOD_ROW]))
    cases.append(("a string", "row"))
    cases.append(("a number", 7))
    return cases


ROW_CASES = _bad_rows()


@pytest.mark.parametrize(("label", "row"), ROW_CASES, ids=[c[0][:60] for c in ROW_CASES])
def test_bad_row_is_named_by_file_and_row(tmp_path, label, row):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(GOOD_ROW) + "\n" + json.dumps(row) + "\n")
    result = CliRunner().invoke(app, ["data", "check", str(path)])
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        pytest.fail(f"{label}: accepted ({result.output.strip()})")
    assert result.exit_code == 2, (label, result.output, result.exception)
    assert "train.jsonl" in result.output and "row 2" in result.output, (label, result.output)

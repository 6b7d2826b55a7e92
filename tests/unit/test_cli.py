"""The `olmorl` command: help text, exit codes and messages, the data subcommands end to end."""

import json

from typer.testing import CliRunner

from olmorl.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_top_level_help_lists_subcommands():
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("rl", "tiny-model", "verify", "data"):
        assert name in result.output


def test_rl_help_lists_every_key_with_default():
    out = invoke("rl", "--help").output
    assert "algo.clip_high" in out and "0.272" in out
    assert "learner.strategy[deepspeed].offload_optimizer" in out
    assert "model.path" in out and "required" in out


def test_rl_dry_run_writes_resolved_config(tmp_path):
    result = invoke(
        "rl", "recipes/tiny/rl_math.yaml", "--dry-run", f"run.output_dir={tmp_path}", "run.name=r1"
    )
    assert result.exit_code == 0, result.output
    resolved = (tmp_path / "r1" / "config.yaml").read_text()
    assert "clip_high: 0.272" in resolved


def test_rl_config_error_exits_2_with_one_line(tmp_path):
    result = invoke(
        "rl", "recipes/tiny/rl_math.yaml", "algo.clip_hihg=0.3", f"run.output_dir={tmp_path}"
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        "override 'algo.clip_hihg=0.3': algo.clip_hihg: unknown key 'clip_hihg'; did you mean 'clip_high'?"
    )
    assert not any(tmp_path.iterdir())  # nothing written for a config that does not load


def test_data_synth_then_check(tmp_path):
    out = tmp_path / "t.jsonl"
    assert (
        invoke(
            "data", "synth", "target-token", str(out), "--n", "20", "--num-targets", "3"
        ).exit_code
        == 0
    )
    assert len(out.read_text().splitlines()) == 20
    result = invoke("data", "check", str(out))
    assert result.exit_code == 0 and "20 rows ok; per verifier: contains=20" in result.output


def test_data_check_reports_file_and_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {
                "messages": [{"role": "user", "content": "hi"}],
                "ground_truth": "1",
                "dataset": "maht",
            }
        )
        + "\n"
    )
    result = invoke("data", "check", str(bad))
    assert result.exit_code == 2
    assert f"{bad} row 1: field 'dataset': unknown verifier 'maht'" in result.output


def test_data_synth_unknown_kind():
    result = invoke("data", "synth", "poetry", "x.jsonl")
    assert result.exit_code == 2 and "unknown synthetic set 'poetry'" in result.output


def test_a_run_whose_data_needs_a_sandbox_refuses_to_start_where_none_works(
    tmp_path, tiny_model_dir, monkeypatch
):
    from verifiers import sandbox_probe

    monkeypatch.setattr(sandbox_probe, "_found", None)
    monkeypatch.setattr(sandbox_probe, "_try", lambda isolation: f"{isolation} refused")
    monkeypatch.setattr(sandbox_probe.os, "geteuid", lambda: 0)
    data = tmp_path / "code.jsonl"
    row = {
        "messages": [{"role": "user", "content": "Write f."}],
        "dataset": "code",
        "ground_truth": ["assert f() == 1"],
    }
    data.write_text(json.dumps(row) + "\n")
    result = invoke(
        "rl",
        "recipes/tiny/rl_math.yaml",
        f"model.path={tiny_model_dir}",
        f"data.train=[{data}]",
        "eval.data=[]",
        f"run.output_dir={tmp_path}",
    )
    assert result.exit_code == 2, result.output
    assert "the code verifiers need a sandbox: rootful failed (rootful refused)" in result.output
    assert not list(tmp_path.glob("*/metrics.jsonl"))  # stopped before anything ran

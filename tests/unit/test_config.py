"""Config loading: each kind of mistake gives one line naming the source and the key."""

import subprocess
import sys
import textwrap

import pytest
import yaml

from olmorl.config import ConfigError, RLConfig, load_config, write_resolved_config

VALID = """\
model:
  path: models/tiny
data:
  train: [data.jsonl]
algo:
  clip_high: 0.28
"""


def write_recipe(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(RLConfig, path, overrides)
    return str(info.value)


def test_valid_recipe_with_override(tmp_path):
    cfg = load_config(
        RLConfig, write_recipe(tmp_path, VALID), ["algo.clip_low=0.1", "learner.strategy=deepspeed"]
    )
    assert cfg.algo.clip_high == 0.28
    assert cfg.algo.clip_low == 0.1
    assert cfg.learner.strategy.name == "deepspeed"
    assert cfg.algo.group_size == 8  # Olmo 3 default kept


def test_typo_suggests_closest_key_and_names_file_line(tmp_path):
    path = write_recipe(tmp_path, VALID.replace("clip_high", "clip_hgh"))
    error = load_error(path)
    assert error == f"{path}:6: algo.clip_hgh: unknown key 'clip_hgh'; did you mean 'clip_high'?"


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path):
    error = load_error(write_recipe(tmp_path, VALID + "run:\n  banana: 1\n"))
    assert len(error.splitlines()) == 1
    assert "run.banana: unknown key 'banana'; valid keys: output_dir, name, seed" in error


def test_unknown_section(tmp_path):
    error = load_error(write_recipe(tmp_path, VALID + "algorithm:\n  x: 1\n"))
    assert "algorithm: unknown key 'algorithm'; did you mean 'algo'?" in error


def test_wrong_type_names_key_and_value(tmp_path):
    error = load_error(write_recipe(tmp_path, VALID + "rollout:\n  max_num_seqs: lots\n"))
    assert len(error.splitlines()) == 1
    assert ":8: rollout.max_num_seqs:" in error and "valid integer" in error and "'lots'" in error


def test_out_of_range_from_override_names_the_override(tmp_path):
    error = load_error(write_recipe(tmp_path, VALID), ["algo.tis_cap=0.5"])
    assert (
        error
        == "override 'algo.tis_cap=0.5': algo.tis_cap: Input should be greater than or equal to 1 (got 0.5)"
    )


def test_typo_in_override_and_in_tagged_union(tmp_path):
    path = write_recipe(tmp_path, VALID)
    assert "did you mean 'group_size'?" in load_error(path, ["algo.groupsize=4"])
    error = load_error(path, ["learner.strategy.reshard_after_forwrd=false"])
    assert "learner.strategy.reshard_after_forwrd: unknown key" in error
    assert "did you mean 'reshard_after_forward'?" in error
    assert "does not match any of the expected tags: 'fsdp2', 'deepspeed'" in load_error(
        path, ["learner.strategy=zero2"]
    )


def test_impossible_combinations(tmp_path):
    path = write_recipe(tmp_path, VALID)
    error = load_error(path, ["algo.num_mini_batches=3"])
    assert "algo.num_mini_batches (3) must divide algo.prompts_per_step (64)" in error
    error = load_error(
        path, ["model.max_position_embeddings=1024", "rollout.max_response_tokens=4096"]
    )
    assert "exceeds model.max_position_embeddings (1024)" in error


def test_missing_required_and_bad_yaml(tmp_path):
    assert "model: Field required" in load_error(write_recipe(tmp_path, "data:\n  train: [a]\n"))
    assert "not valid YAML" in load_error(write_recipe(tmp_path, "model: [unclosed\n"))
    assert "cannot read config" in load_error(tmp_path / "absent.yaml")


def test_bad_override_syntax(tmp_path):
    assert "expected KEY.SUBKEY=VALUE" in load_error(
        write_recipe(tmp_path, VALID), ["algo.clip_high"]
    )


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(RLConfig, write_recipe(tmp_path, VALID))
    written = write_resolved_config(cfg, tmp_path / "run")
    again = RLConfig.model_validate(yaml.safe_load(written.read_text()))
    assert again == cfg
    assert yaml.safe_load(written.read_text())["algo"]["tis_cap"] == 2.0  # defaults are written too


def test_loading_imports_neither_torch_nor_vllm(tmp_path):
    path = write_recipe(tmp_path, VALID)
    code = (
        "import sys; from olmorl.cli import app; from olmorl.config import RLConfig, load_config; "
        f"load_config(RLConfig, {str(path)!r}); "
        "print(sorted(m for m in ('torch', 'vllm', 'ray', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("override", ["rollout.top_p=0.9", "rollout.top_k=50"])
def test_truncated_sampling_is_refused_with_the_reason(tmp_path, override):
    # vLLM renormalises its log-probs over the nucleus; the learner's are of the full softmax.
    error = load_error(write_recipe(tmp_path, VALID), [override])
    key = override.split("=")[0]
    assert error.startswith(f"override '{override}': {key}: must be ")
    assert "renormalised" in error and "full softmax" in error

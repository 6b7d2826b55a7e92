"""Pretraining config validation: windows that do not divide the step or fit a row, sources
sharing a metrics label, and a `wsd` schedule longer than the run are each refused with one line
naming the keys."""

import textwrap

import pytest
from pydantic import ValidationError

from olmorl.config import ConfigError, PretrainConfig, load_config
from olmorl.config.components import LearnerConfig
from olmorl.config.pretrain import PretrainDataConfig

VALID = """\
model:
  path: models/tiny
data:
  sources:
    - path: data/web.npy
      weight: 3
    - path: data/math.jsonl
  seq_len: 256
learner:
  micro_batch_tokens: 1024
  lr_schedule: wsd
  warmup_fraction: 0.1
  decay_fraction: 0.2
train:
  tokens_per_step: 4096
"""


def load(tmp_path, text: str = VALID, overrides=()) -> PretrainConfig:
    path = tmp_path / "pretrain.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(PretrainConfig, path, overrides)


def load_error(tmp_path, overrides=(), text: str = VALID) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, overrides)
    return str(info.value)


def test_valid_recipe_loads_with_its_windows_per_step(tmp_path):
    cfg = load(tmp_path)
    assert cfg.windows_per_step(1) == 16
    assert [s.label for s in cfg.data.sources] == ["web", "math"]


def test_tokens_per_step_not_a_multiple_of_seq_len_is_refused(tmp_path):
    error = load_error(tmp_path, ["train.tokens_per_step=4000"])
    assert len(error.splitlines()) == 1
    assert "train.tokens_per_step (4000) must be a multiple of data.seq_len (256)" in error
    # A multiple other than a power of two is fine.
    assert load(tmp_path, overrides=["train.tokens_per_step=768"]).windows_per_step(1) == 3


def test_micro_batch_smaller_than_a_window_is_refused(tmp_path):
    error = load_error(tmp_path, ["learner.micro_batch_tokens=255"])
    assert len(error.splitlines()) == 1
    assert "learner.micro_batch_tokens (255) is less than data.seq_len (256)" in error
    assert (
        load(tmp_path, overrides=["learner.micro_batch_tokens=256"]).learner.micro_batch_tokens
        == 256
    )


def test_sources_sharing_a_label_are_refused_naming_it(tmp_path):
    text = VALID.replace("data/math.jsonl", "other/web.jsonl")
    error = load_error(tmp_path, text=text)
    assert len(error.splitlines()) == 1
    assert "data.sources: web named twice; give each a distinct `name`" in error
    # A distinct `name` resolves it.
    renamed = text.replace(
        "    - path: other/web.jsonl", "    - path: other/web.jsonl\n      name: web2"
    )
    assert [s.label for s in load(tmp_path, text=renamed).data.sources] == ["web", "web2"]


def test_an_explicit_name_equal_to_another_sources_stem_is_refused(tmp_path):
    text = VALID.replace(
        "    - path: data/math.jsonl", "    - path: data/math.jsonl\n      name: web"
    )
    assert "data.sources: web named twice" in load_error(tmp_path, text=text)


def test_wsd_warmup_and_decay_longer_than_the_run_are_refused():
    with pytest.raises(ValueError) as info:
        LearnerConfig(lr_schedule="wsd", warmup_fraction=0.5, decay_fraction=0.6)
    assert (
        "learner.warmup_fraction (0.5) + learner.decay_fraction (0.6) is more than the whole run"
        in (str(info.value))
    )
    # Exactly the whole run, or the same fractions under another schedule, are accepted.
    LearnerConfig(lr_schedule="wsd", warmup_fraction=0.25, decay_fraction=0.75)
    LearnerConfig(lr_schedule="linear", warmup_fraction=0.5, decay_fraction=0.6)


def test_wsd_error_in_a_recipe_names_the_learner_keys(tmp_path):
    error = load_error(tmp_path, ["learner.warmup_fraction=0.9"])
    assert len(error.splitlines()) == 1
    assert "learner.warmup_fraction (0.9) + learner.decay_fraction (0.2)" in error


def test_two_eval_files_of_one_name_are_refused():
    with pytest.raises(ValidationError, match="data.eval: more than one file is called eval"):
        PretrainDataConfig(sources=[{"path": "a.npy"}], eval=["x/eval.jsonl", "y/eval.npy"])


def test_a_length_schedule_steps_the_window_up(tmp_path):
    cfg = load(
        tmp_path,
        overrides=["data.seq_len_schedule={5: 512, 9: 1024}", "learner.micro_batch_tokens=1024"],
    )
    assert [cfg.seq_len_at(step) for step in (1, 4, 5, 8, 9, 100)] == [
        256,
        256,
        512,
        512,
        1024,
        1024,
    ]
    assert [cfg.windows_per_step(step) for step in (1, 5, 9)] == [16, 8, 4]


def test_a_scheduled_length_must_fit_the_micro_batch(tmp_path):
    error = load_error(tmp_path, ["data.seq_len_schedule={5: 2048}"])
    assert "data.seq_len_schedule[5] (2048)" in error and "micro_batch_tokens" in error

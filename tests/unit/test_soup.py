"""Model soups: tensor-by-tensor float64 means of tiny checkpoints, and every refusal."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, Olmo3ForCausalLM
from typer.testing import CliRunner

from olmorl.cli import app
from olmorl.learner.checkpoint import atomic_directory
from olmorl.models.tiny import write_tiny_model
from olmorl.soup import INDEX_FILE, SoupError, parse_weights, soup_checkpoints


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("tiny")
    return [write_tiny_model(root / f"seed{seed}", seed=seed) for seed in range(3)]


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a single-file or sharded checkpoint."""
    index = path / INDEX_FILE
    if index.is_file():
        files = set(json.loads(index.read_text())["weight_map"].values())
        return {k: v for f in files for k, v in load_file(path / f).items()}
    return load_file(path / "model.safetensors")


def copy_checkpoint(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


def edit_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def test_soup_is_the_float64_mean(tiny, tmp_path):
    out = soup_checkpoints(tiny, tmp_path / "soup")
    inputs = [weights_of(p) for p in tiny]
    souped = weights_of(out)
    assert souped.keys() == inputs[0].keys()
    for name, tensor in souped.items():
        expected = torch.stack([w[name].double() for w in inputs]).mean(0).float()
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, expected), name
    assert not torch.equal(souped["lm_head.weight"], inputs[0]["lm_head.weight"])
    assert json.loads((out / "soup.json").read_text())["weights"] == pytest.approx([1 / 3] * 3)


def test_weighted_soup(tiny, tmp_path):
    out = soup_checkpoints(tiny, tmp_path / "soup", parse_weights("1,2,5", 3))
    inputs = [weights_of(p) for p in tiny]
    for name, tensor in weights_of(out).items():
        # (1·a + 2·b + 5·c) / 8, summed in float64 and rounded once to float32.
        expected = sum(w * x[name].double() for w, x in zip((1, 2, 5), inputs, strict=True)) / 8
        torch.testing.assert_close(tensor, expected.float(), rtol=0, atol=0)


def test_soup_loads_in_transformers_with_the_first_tokenizer(tiny, tmp_path):
    out = soup_checkpoints(tiny[:2], tmp_path / "soup")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, Olmo3ForCausalLM)
    logits = model(torch.tensor([[2, 70, 80, 90, 3]])).logits
    assert logits.shape[-1] == model.config.vocab_size and torch.isfinite(logits).all()
    for name in ("config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (out / name).read_bytes() == (tiny[0] / name).read_bytes(), name
    assert not list(tmp_path.glob(".tmp-*")), "the temporary directory was renamed away"


def test_sharded_inputs_and_outputs(tiny, tmp_path):
    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny[1]).save_pretrained(sharded, max_shard_size="1MB")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny[1] / name, sharded / name)
    assert (sharded / INDEX_FILE).is_file() and not (sharded / "model.safetensors").exists()

    reference = weights_of(soup_checkpoints(tiny[:2], tmp_path / "single"))
    out = soup_checkpoints([tiny[0], sharded], tmp_path / "soup", max_shard_bytes=1 << 20)
    index = json.loads((out / INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for t in reference.values()
    )
    souped = weights_of(out)
    assert souped.keys() == reference.keys()
    assert all(torch.equal(souped[k], reference[k]) for k in reference)
    assert torch.isfinite(
        AutoModelForCausalLM.from_pretrained(out)(torch.tensor([[5, 6]])).logits
    ).all()


def test_different_presets_are_refused(tiny, tmp_path):
    small = write_tiny_model(tmp_path / "small", preset="small")
    with pytest.raises(SoupError, match="config.json differs") as e:
        soup_checkpoints([tiny[0], small], tmp_path / "soup")
    assert str(small) in str(e.value) and "'hidden_size' is 256 here but 128" in str(e.value)
    assert not (tmp_path / "soup").exists()


def test_modified_config_is_refused_but_bookkeeping_keys_are_not(tiny, tmp_path):
    changed = copy_checkpoint(tiny[1], tmp_path / "changed")
    edit_config(changed, rms_norm_eps=1e-6)
    with pytest.raises(SoupError, match=r"changed: config.json differs .*'rms_norm_eps'"):
        soup_checkpoints([tiny[0], changed], tmp_path / "soup")

    renamed = copy_checkpoint(tiny[1], tmp_path / "renamed")
    edit_config(renamed, _name_or_path="elsewhere", transformers_version="0.0", use_cache=False)
    soup_checkpoints([tiny[0], renamed], tmp_path / "soup")


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda w: w.update({"lm_head.weight": w["lm_head.weight"][:-64]}),
            (
                r"tensor 'lm_head.weight' has shape \[640, 128\] and dtype F32, but shape "
                r"\[704, 128\] and dtype F32"
            ),
        ),
        (
            lambda w: w.update({"model.norm.weight": w["model.norm.weight"].bfloat16()}),
            r"tensor 'model.norm.weight' has shape \[128\] and dtype BF16",
        ),
        (lambda w: w.pop("model.norm.weight"), r"lacks tensor 'model.norm.weight'"),
        (lambda w: w.update(extra=torch.zeros(2)), r"has extra tensor 'extra'"),
    ],
    ids=["shape", "dtype", "missing", "extra"],
)
def test_tensor_mismatches_are_refused(tiny, tmp_path, edit, message):
    bad = copy_checkpoint(tiny[1], tmp_path / "bad")
    tensors = load_file(bad / "model.safetensors")
    edit(tensors)
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SoupError, match=message) as e:
        soup_checkpoints([tiny[0], bad], tmp_path / "soup")
    assert str(e.value).startswith(f"checkpoint {bad}: ")


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2", "2 weights for 3 checkpoints"),
        ("1,0,1", "positive and finite, got 0.0"),
        ("1,-2,1", "positive and finite, got -2.0"),
        ("1,nan,1", "positive and finite, got nan"),
        ("1,inf,1", "positive and finite, got inf"),
        ("1,x,1", "expected comma-separated numbers"),
    ],
)
def test_bad_weights_are_refused(text, message):
    with pytest.raises(SoupError, match=message):
        parse_weights(text, 3)


def test_weights_are_normalised(tiny, tmp_path):
    assert parse_weights("1,3", 2) == [1.0, 3.0]
    out = soup_checkpoints(tiny[:2], tmp_path / "soup", [1.0, 3.0])
    assert json.loads((out / "soup.json").read_text())["weights"] == [0.25, 0.75]


def test_out_dir_rules(tiny, tmp_path):
    out = tmp_path / "soup"
    out.mkdir()  # an empty directory is fine
    soup_checkpoints(tiny[:2], out)
    with pytest.raises(SoupError, match="exists and is not empty; pass --force"):
        soup_checkpoints(tiny[:2], out)
    soup_checkpoints(tiny[1:], out, force=True)
    assert json.loads((out / "soup.json").read_text())["checkpoints"] == [str(p) for p in tiny[1:]]
    with pytest.raises(SoupError, match="is one of the input checkpoints"):
        soup_checkpoints(tiny[:2], tiny[1], force=True)
    with pytest.raises(SoupError, match="at least two checkpoints"):
        soup_checkpoints(tiny[:1], tmp_path / "one")
    with pytest.raises(SoupError, match="neither model.safetensors nor"):
        soup_checkpoints([tiny[0], tmp_path], tmp_path / "x")


def test_failed_write_leaves_the_old_directory(tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "old").write_text("kept")
    with pytest.raises(RuntimeError), atomic_directory(out) as tmp:
        (tmp / "new").write_text("lost")
        raise RuntimeError("crash mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert [p.name for p in out.iterdir()] == ["old"]


def test_cli_soup(tiny, tmp_path):
    runner = CliRunner()
    out = tmp_path / "soup"
    args = ["soup", *map(str, tiny[:2]), "--out", str(out), "--weights", "1,3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"wrote the soup of 2 checkpoints (weights 0.25, 0.75) to {out}" in result.output
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert (
        result.output.strip() == f"--out {out} exists and is not empty; pass --force to replace it"
    )
    result = runner.invoke(app, ["soup", *map(str, tiny), "--out", str(out), "--weights", "1,2"])
    assert result.exit_code == 2 and "2 weights for 3 checkpoints" in result.output

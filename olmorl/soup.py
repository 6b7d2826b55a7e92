"""Model soups: the (weighted) average of Hugging Face checkpoints of one architecture.

Olmo 3 averages two SFT runs and several base checkpoints by plain averaging (design §3);
`olmorl soup A B --out C` does the same. Tensors are read one name at a time with `safe_open` and
summed in float64, so memory holds one tensor per input plus one output shard, never whole models.
"""

import json
import math
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from olmorl.io import atomic_directory

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Output shards close once they reach this size, like transformers' default max_shard_size.
MAX_SHARD_BYTES = 5 * 2**30
# config.json keys that record how a checkpoint was saved or is run, not what it computes. The
# tensor dtypes are compared separately, so a differing `dtype` entry cannot hide a real change.
IGNORED_CONFIG_KEYS = frozenset(
    {"_name_or_path", "_commit_hash", "transformers_version", "torch_dtype", "dtype", "use_cache"}
)
# Non-weight files copied from the first checkpoint: config, generation config, tokenizer.
COPIED_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template*",
    "vocab.*",
    "merges.txt",
    "*.tiktoken",
)
# Written beside the weights: the inputs and normalised weights of the soup, for provenance.
RECIPE_FILE = "soup.json"


class SoupError(ValueError):
    """Checkpoints that cannot be averaged, or bad arguments; the message names the culprit."""


@dataclass(frozen=True)
class _Checkpoint:
    path: Path
    files: dict[str, Path]
    """Tensor name -> the safetensors file that holds it."""


def parse_weights(text: str, num_checkpoints: int) -> list[float]:
    """`"1,3"` -> [1.0, 3.0], checked: one positive finite weight per checkpoint."""
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise SoupError(f"--weights {text!r}: expected comma-separated numbers") from None
    normalise_weights(weights, num_checkpoints)
    return weights


def normalise_weights(weights: Sequence[float], num_checkpoints: int) -> list[float]:
    """The weights divided by their sum, once checked: as many as checkpoints, all positive."""
    if len(weights) != num_checkpoints:
        raise SoupError(
            f"--weights: {len(weights)} weights for {num_checkpoints} checkpoints; "
            "give one weight per checkpoint"
        )
    bad = [w for w in weights if not (math.isfinite(w) and w > 0)]
    if bad:
        raise SoupError(f"--weights: every weight must be positive and finite, got {bad[0]}")
    total = math.fsum(weights)
    return [w / total for w in weights]


def soup_checkpoints(
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    weights: Sequence[float] | None = None,
    force: bool = False,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> Path:
    """Writes the weighted mean of `checkpoints` to `out_dir` (plain mean when weights is None).

    `weights` need not sum to 1: each tensor is Σ w_i·x_i / Σ w_i, accumulated in float64 and
    rounded once to the inputs' dtype (so equal weights give exactly the float64 mean).

    Everything is checked before any tensor is read: config.json (less IGNORED_CONFIG_KEYS),
    tensor names, shapes and dtypes. An existing non-empty `out_dir` is refused unless `force`,
    and is only replaced, in one rename, once the new checkpoint is complete; `out_dir` may never
    be one of the inputs.
    """
    paths = [Path(c) for c in checkpoints]
    out_dir = Path(out_dir)
    if len(paths) < 2:
        raise SoupError(f"a soup needs at least two checkpoints, got {len(paths)}")
    weights = [1.0] * len(paths) if weights is None else list(weights)
    normalised = normalise_weights(weights, len(paths))
    _check_out_dir(out_dir, paths, force)
    ckpts = [_open_checkpoint(p) for p in paths]
    _check_configs(ckpts)
    with ExitStack() as stack:
        handles = {
            file: stack.enter_context(safe_open(file, framework="pt"))
            for ckpt in ckpts
            for file in set(ckpt.files.values())
        }
        names = _check_tensors(ckpts, handles)
        with atomic_directory(out_dir) as tmp:
            _write_weights(ckpts, handles, names, weights, tmp, max_shard_bytes)
            _copy_non_weight_files(ckpts[0].path, tmp)
            recipe = {
                "checkpoints": [str(p) for p in paths],
                "weights": normalised,
            }
            (tmp / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n")
    return out_dir


def _check_out_dir(out_dir: Path, inputs: Sequence[Path], force: bool) -> None:
    if any(out_dir.resolve() == p.resolve() for p in inputs):
        raise SoupError(f"--out {out_dir} is one of the input checkpoints; write elsewhere")
    if out_dir.exists() and not out_dir.is_dir():
        raise SoupError(f"--out {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise SoupError(f"--out {out_dir} exists and is not empty; pass --force to replace it")


def _open_checkpoint(path: Path) -> _Checkpoint:
    if not path.is_dir():
        raise SoupError(f"checkpoint {path}: not a directory")
    index = path / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = {name: path / file for name, file in weight_map.items()}
        missing = sorted({f for f in files.values() if not f.is_file()})
        if missing:
            raise SoupError(f"checkpoint {path}: {INDEX_FILE} names missing shard {missing[0]}")
        return _Checkpoint(path, files)
    single = path / SINGLE_FILE
    if single.is_file():
        with safe_open(single, framework="pt") as f:
            return _Checkpoint(path, dict.fromkeys(f.keys(), single))
    raise SoupError(
        f"checkpoint {path}: neither {SINGLE_FILE} nor {INDEX_FILE}; "
        "only safetensors checkpoints can be souped"
    )


def _read_config(ckpt: _Checkpoint) -> dict:
    file = ckpt.path / "config.json"
    if not file.is_file():
        raise SoupError(f"checkpoint {ckpt.path}: no config.json")
    config = json.loads(file.read_text())
    return {k: v for k, v in config.items() if k not in IGNORED_CONFIG_KEYS}


def _check_configs(ckpts: Sequence[_Checkpoint]) -> None:
    first = _read_config(ckpts[0])
    for ckpt in ckpts[1:]:
        config = _read_config(ckpt)
        differing = sorted(k for k in first.keys() | config.keys() if first.get(k) != config.get(k))
        if differing:
            details = "; ".join(
                f"'{k}' is {_short(config.get(k))} here but {_short(first.get(k))}"
                for k in differing[:5]
            )
            more = f" (and {len(differing) - 5} more keys)" if len(differing) > 5 else ""
            raise SoupError(
                f"checkpoint {ckpt.path}: config.json differs from that of {ckpts[0].path}: "
                f"{details}{more}"
            )


def _short(value) -> str:
    text = "absent" if value is None else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_tensors(ckpts: Sequence[_Checkpoint], handles: dict) -> list[str]:
    """The sorted tensor names, once every checkpoint has the same names, shapes and dtypes."""
    first = ckpts[0]
    names = sorted(first.files)
    for ckpt in ckpts[1:]:
        lacking = set(first.files) - set(ckpt.files)
        extra = set(ckpt.files) - set(first.files)
        if lacking or extra:
            what = (
                f"lacks tensor {min(lacking)!r}" if lacking else f"has extra tensor {min(extra)!r}"
            )
            raise SoupError(
                f"checkpoint {ckpt.path}: {what} compared with {first.path} "
                f"({len(lacking)} tensors missing, {len(extra)} extra)"
            )
    for name in names:
        expected = _shape_and_dtype(handles[first.files[name]], name)
        for ckpt in ckpts[1:]:
            found = _shape_and_dtype(handles[ckpt.files[name]], name)
            if found != expected:
                raise SoupError(
                    f"checkpoint {ckpt.path}: tensor {name!r} has shape {found[0]} and dtype "
                    f"{found[1]}, but shape {expected[0]} and dtype {expected[1]} in {first.path}"
                )
    return names


def _shape_and_dtype(handle, name: str) -> tuple[list[int], str]:
    tensor_slice = handle.get_slice(name)  # reads the header only
    return list(tensor_slice.get_shape()), tensor_slice.get_dtype()


def _averaged(ckpts, handles, name: str, weights: Sequence[float]) -> torch.Tensor:
    """The weighted mean of one tensor, accumulated in float64, in the inputs' dtype."""
    tensors = (handles[ckpt.files[name]].get_tensor(name) for ckpt in ckpts)
    first = next(tensors)
    if not first.is_floating_point():
        # Integer or bool buffers have no meaningful mean; they must agree and are copied.
        for ckpt, other in zip(ckpts[1:], tensors, strict=True):
            if not torch.equal(first, other):
                raise SoupError(
                    f"checkpoint {ckpt.path}: non-float tensor {name!r} differs from that of "
                    f"{ckpts[0].path}; only floating-point tensors are averaged"
                )
        return first
    # Scale by the raw weights and divide once at the end: with equal weights the sum is exact
    # and the result is the correctly rounded float64 mean.
    total = first.to(torch.float64).mul_(weights[0])
    for weight, tensor in zip(weights[1:], tensors, strict=True):
        total.add_(tensor.to(torch.float64), alpha=weight)
    return total.div_(math.fsum(weights)).to(first.dtype)


def _write_weights(ckpts, handles, names, weights, out_dir: Path, max_shard_bytes: int):
    """Saves shards of about max_shard_bytes, then names them as transformers expects."""
    shard_files: list[Path] = []
    weight_map: dict[str, int] = {}
    total_bytes = 0
    averaged = ((name, _averaged(ckpts, handles, name, weights)) for name in names)
    for shard_index, shard in enumerate(_shards(averaged, max_shard_bytes)):
        file = out_dir / f".shard-{shard_index}.safetensors"
        save_file(shard, file, metadata={"format": "pt"})
        shard_files.append(file)
        weight_map.update(dict.fromkeys(shard, shard_index))
        total_bytes += sum(t.numel() * t.element_size() for t in shard.values())
    if len(shard_files) == 1:
        shard_files[0].rename(out_dir / SINGLE_FILE)
        return
    count = len(shard_files)
    final = [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
    for file, name in zip(shard_files, final, strict=True):
        file.rename(out_dir / name)
    index = {
        "metadata": {"total_size": total_bytes},
        "weight_map": {name: final[i] for name, i in weight_map.items()},
    }
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def _shards(
    tensors: Iterator[tuple[str, torch.Tensor]], max_shard_bytes: int
) -> Iterator[dict[str, torch.Tensor]]:
    shard: dict[str, torch.Tensor] = {}
    size = 0
    for name, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if shard and size + nbytes > max_shard_bytes:
            yield shard
            shard, size = {}, 0
        shard[name] = tensor.contiguous()
        size += nbytes
    if shard:
        yield shard


def _copy_non_weight_files(source: Path, out_dir: Path) -> None:
    for pattern in COPIED_FILE_PATTERNS:
        for file in source.glob(pattern):
            if file.is_file():
                shutil.copy2(file, out_dir / file.name)

"""Loads a Hugging Face checkpoint into a sharded learner with no full copy of the model per rank.

`build_empty_model(path)` builds the model with its parameters on the meta device; the strategy
shards it (`materialize` then gives each rank storage for its shards alone); `load_from_rank0`
reads the checkpoint on rank 0, one tensor at a time in the dtype it is stored in, broadcasts it,
and each rank copies its own rows into its float32 shard. A ZeRO-3 model, partitioned as it was
built (`olmorl.learner.deepspeed_policy.build_partitioned_model`), is filled one parameter at a
time through DeepSpeed's own gather and broadcast. The same code runs on gloo and NCCL.
"""

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn.modules.module import register_module_parameter_registration_hook
from transformers import AutoConfig, AutoModelForCausalLM

from olmorl.learner.parallelize import hf_name

_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"
# The dtype names of safetensors headers.
_STORED_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "I64": torch.int64,
    "I32": torch.int32,
}


@contextmanager
def parameters_on_meta():
    """Modules built inside get their parameters on the meta device, each as it is registered.

    Buffers stay where they are made (on CPU): a module computes its non-persistent ones, such
    as rotary frequencies, in `__init__`, and no checkpoint holds them. Each parameter still
    exists on CPU between its creation and its registration, one at a time and never written.
    """

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None):
        if param is None or param.is_meta:
            return None
        return nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    handle = register_module_parameter_registration_hook(to_meta)
    try:
        yield
    finally:
        handle.remove()


def build_empty_model(path: str, **kwargs) -> nn.Module:
    """The float32 causal LM of the checkpoint at `path` (a directory or a hub name), parameters
    on the meta device; `kwargs` go to `from_config` (`attn_implementation`, ...)."""
    config = AutoConfig.from_pretrained(path)
    with parameters_on_meta():
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32, **kwargs)


def has_meta_parameters(model: nn.Module) -> bool:
    return any(param.is_meta for param in model.parameters())


def materialize(model: nn.Module, device: str | torch.device) -> None:
    """Gives every meta parameter uninitialised storage on `device`, its local shard only when
    the model is sharded; buffers keep their values (moved to `device`)."""
    buffers = [(name, buffer) for name, buffer in model.named_buffers(remove_duplicate=False)]
    model.to_empty(device=device)
    for name, buffer in buffers:
        module_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(module_name), attr, buffer.to(device))


def checkpoint_files(path: str) -> list[Path]:
    """The safetensors files of the checkpoint at `path` (a directory, else a hub name, which is
    downloaded)."""
    directory = Path(path)
    if not directory.is_dir():
        from huggingface_hub import snapshot_download

        directory = Path(snapshot_download(path, allow_patterns=["*.safetensors", "*.json"]))
    if (directory / _INDEX).is_file():
        weight_map = json.loads((directory / _INDEX).read_text())["weight_map"]
        return [directory / file for file in sorted(set(weight_map.values()))]
    if (directory / _SINGLE).is_file():
        return [directory / _SINGLE]
    raise FileNotFoundError(
        f"no {_SINGLE} or {_INDEX} in {directory}: the learner loads safetensors checkpoints only"
    )


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor lies in a safetensors file, and what it is."""

    file: Path
    """The file holding it."""
    offset: int
    """Its first byte in the file."""
    shape: tuple[int, ...]
    """Its shape."""
    dtype: torch.dtype
    """The dtype it is stored in."""

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def read(self) -> Tensor:
        """The tensor, read into memory of its own size (safetensors' `safe_open` would first
        read the whole file, several GB for a large checkpoint, per file opened)."""
        tensor = torch.empty(self.shape, dtype=self.dtype)
        buffer = tensor.reshape(-1).view(torch.uint8).numpy()
        with open(self.file, "rb") as f:
            f.seek(self.offset)
            if f.readinto(buffer) != buffer.size:
                raise OSError(f"{self.file} ends inside a tensor at byte {self.offset}")
        return tensor


def stored_tensors(files: list[Path]) -> dict[str, StoredTensor]:
    """Each tensor of the files, from their headers (format: github.com/huggingface/safetensors:
    an 8-byte little-endian header size, a JSON header, then the data)."""
    stored = {}
    for file in files:
        with open(file, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        for name, entry in header.items():
            if entry["dtype"] not in _STORED_DTYPES:
                raise ValueError(f"{file}: {name} is stored as {entry['dtype']}, not read here")
            stored[name] = StoredTensor(
                file,
                8 + size + entry["data_offsets"][0],
                tuple(entry["shape"]),
                _STORED_DTYPES[entry["dtype"]],
            )
    return stored


def is_zero3_partitioned(tensor: Tensor) -> bool:
    """Whether `tensor` is a parameter that ZeRO-3 has partitioned (DeepSpeed marks them so)."""
    return hasattr(tensor, "ds_id")


def full_shape(tensor: Tensor) -> tuple[int, ...]:
    """The shape of the whole tensor: a DTensor's is its global shape already; a ZeRO-3
    parameter's own shape is that of the empty placeholder left between gathers."""
    return tuple(tensor.ds_shape if is_zero3_partitioned(tensor) else tensor.shape)


def _targets(model: nn.Module) -> dict[str, Tensor]:
    """Checkpoint name → the tensor it loads into: parameters (shared ones once) and persistent
    buffers."""
    persistent = {hf_name(name) for name in model.state_dict()}
    targets = {hf_name(name): param for name, param in model.named_parameters()}
    for name, buffer in model.named_buffers():
        if hf_name(name) in persistent:
            targets[hf_name(name)] = buffer
    return targets


def _plan(targets: dict[str, Tensor], path: str) -> list[tuple[str, StoredTensor]]:
    """Where each target lies in the checkpoint, checked against the model."""
    stored = stored_tensors(checkpoint_files(path))
    missing = [name for name in targets if name not in stored]
    if missing:
        raise KeyError(
            f"the checkpoint at {path} lacks {len(missing)} of the model's tensors, e.g. "
            f"{missing[:3]}: its names must be the model's own (Hugging Face `state_dict` names)"
        )
    for name, target in targets.items():
        if stored[name].shape != full_shape(target):
            raise ValueError(
                f"{name}: the checkpoint at {path} holds {stored[name].shape}, the model "
                f"{full_shape(target)}"
            )
    return [(name, stored[name]) for name in targets]


def _broadcast_plan(targets: dict[str, Tensor], path: str) -> list[tuple[str, StoredTensor]]:
    """Rank 0's plan on every rank; a failure on rank 0 is raised on all of them (rather than
    leaving the others waiting in the first broadcast)."""
    error, plan = None, None
    if dist.get_rank() == 0:
        try:
            plan = _plan(targets, path)
        except (OSError, KeyError, ValueError) as failure:
            error = f"{type(failure).__name__}: {failure}"
    message = [(error, plan)]
    dist.broadcast_object_list(message, src=0)
    error, plan = message[0]
    if error is not None:
        raise RuntimeError(f"loading {path} failed on rank 0: {error}")
    return plan


@torch.no_grad()
def load_from_rank0(model: nn.Module, path: str, device: str | torch.device) -> None:
    """Fills the model's parameters and persistent buffers from the checkpoint at `path`.

    All ranks call it together. Rank 0 reads one tensor at a time; it travels in its stored dtype
    (a bf16 checkpoint moves half the bytes of float32) on `device`, the process group's; each
    rank copies, and so casts, its own rows into its shard (the whole tensor if not sharded).
    Casting is element-wise, so the result equals `from_pretrained(path, dtype=...)` bit for bit.
    A ZeRO-3 parameter is written on rank 0 alone (`_load_zero3_partitioned`).
    """
    targets = _targets(model)
    plan = _broadcast_plan(targets, path)
    broadcast = [s for name, s in plan if not is_zero3_partitioned(targets[name])]
    # One buffer for every full tensor in turn, the size of the largest: the collective's thread
    # may release a tensor after the call returns, so a fresh one per tensor could pile up.
    scratch = torch.empty(
        max((s.nbytes for s in broadcast), default=0), dtype=torch.uint8, device=device
    )
    for name, stored in plan:
        target = targets[name]
        if is_zero3_partitioned(target):
            _load_zero3_partitioned(target, stored)
            continue
        full = scratch[: stored.nbytes].view(stored.dtype).view(stored.shape)
        if dist.get_rank() == 0:
            full.copy_(stored.read())
        dist.broadcast(full, src=0)
        if isinstance(target, DTensor):
            # src_data_rank=None: no communication, each rank slices its rows out of `full`.
            rows = distribute_tensor(
                full, target.device_mesh, target.placements, src_data_rank=None
            )
            target.to_local().copy_(rows.to_local())
        else:
            target.copy_(full)


def _load_zero3_partitioned(param: Tensor, stored: StoredTensor) -> None:
    """Entering `GatheredParameters` gathers the whole parameter on every rank (its training
    dtype); rank 0 overwrites it with the stored tensor; with `modifier_rank=0`, leaving
    broadcasts rank 0's copy and each rank keeps its own partition of it. Rank 0 of the
    parameter's group is the global rank 0 that reads: the learner partitions over all ranks."""
    import deepspeed

    with deepspeed.zero.GatheredParameters([param], modifier_rank=0):
        if dist.get_rank() == 0:
            param.data.copy_(stored.read())

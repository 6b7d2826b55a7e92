"""The learner strategies behind one interface: a sharded model, its optimizer, its state on disk.

`LearnerWorker` trains through `ShardedPolicy` only, so SFT, DPO and RL run unchanged on FSDP2 or
DeepSpeed ZeRO-3. A step is any number of `backward` calls (gradients accumulate) and one `step`.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.distributed.device_mesh import init_device_mesh
from transformers import PretrainedConfig

from olmorl.config import FSDP2Strategy, LearnerConfig
from olmorl.learner.loading import (
    build_empty_model,
    has_meta_parameters,
    load_from_rank0,
    materialize,
)
from olmorl.learner.parallelize import checkpoint_layers, hf_name, parallelize_fsdp2

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


class ShardedPolicy(Protocol):
    model: nn.Module
    """Called like the model it wraps (the learner's: `olmorl.learner.scoring.use_chunked_head`)."""
    hf_config: PretrainedConfig
    """The wrapped model's Hugging Face config."""

    def backward(self, loss: Tensor) -> None:
        """Adds d(loss)/d(params) to the gradients, averaged over data-parallel ranks."""

    def step(self, lr: float) -> float:
        """Clips to learner.max_grad_norm, applies AdamW at `lr`, zeroes the gradients; returns
        the global gradient norm before clipping."""

    def full_parameters(
        self, dtype: torch.dtype, device: str = "cpu"
    ) -> Iterator[tuple[str, Tensor | None]]:
        """(HF name, full tensor in `dtype` on `device`) per parameter; None off rank 0. Every rank
        must iterate to the end: each parameter is a collective."""

    def save_state(self, directory: Path) -> None:
        """Writes this rank's share of weights and optimizer state (all ranks, one directory)."""

    def load_state(self, directory: Path) -> None:
        """Restores what `save_state` wrote (the same world size)."""


def adamw(params, learner: LearnerConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        params, lr=learner.lr, weight_decay=learner.weight_decay, betas=(0.9, 0.999)
    )


class FSDP2Policy:
    """`fully_shard` per decoder layer, float32 master weights, AdamW on the local shards.

    The model may be loaded (on CPU) or on the meta device: sharded first, each rank then holds
    its shards alone, on `device` (a meta model's are uninitialised until `load_from_rank0`).
    A single float32 rank keeps the plain module: there is nothing to shard or cast.
    """

    def __init__(
        self,
        model: nn.Module,
        learner: LearnerConfig,
        strategy: FSDP2Strategy,
        device: str,
        world_size: int,
        compute_dtype: torch.dtype,
    ):
        self.hf_config = model.config
        if world_size == 1 and compute_dtype == torch.float32:
            # Nothing to shard or cast: fully_shard would copy each unit into an "unsharded"
            # buffer and back every step, 30% of a 0.6B step on CPU (`olmorl bench learner`).
            checkpoint_layers(model, strategy.activation_checkpointing)
            self.model = model.train()
            if not has_meta_parameters(self.model):
                self.model.to(device)
        else:
            mesh = init_device_mesh(device, (world_size,))
            # No `model.to(device)`: fully_shard moves each unit's shards, never the whole model.
            self.model = parallelize_fsdp2(model, strategy, mesh, compute_dtype).train()
        if has_meta_parameters(self.model):
            materialize(self.model, device)
        self.optimizer = adamw(self.model.parameters(), learner)
        self.max_grad_norm = learner.max_grad_norm

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def step(self, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def full_parameters(
        self, dtype: torch.dtype, device: str = "cpu"
    ) -> Iterator[tuple[str, Tensor | None]]:
        import torch.distributed as dist

        rank0 = dist.get_rank() == 0
        for name, param in self.model.named_parameters():
            full = gather_full(param, dtype)
            yield hf_name(name), full.to(device) if rank0 else None

    def save_state(self, directory: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=directory)

    def load_state(self, directory: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        state = {"model": model_state, "optimizer": optimizer_state}
        dcp.load(state, checkpoint_id=directory)
        set_state_dict(
            self.model,
            self.optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
        )


def gather_full(param: Tensor, dtype: torch.dtype) -> Tensor:
    """The full tensor of a parameter (an FSDP2 shard or a plain tensor) in `dtype`, every rank
    taking part. Each shard is cast before the all-gather, so a bf16 push moves half the bytes
    of the float32 masters (the result is the same: casting is element-wise)."""
    local = param.detach().to(dtype)
    return local.full_tensor() if hasattr(local, "full_tensor") else local


def build_learner_model(
    path: str, learner: LearnerConfig, device: str, dtype: str, **kwargs
) -> nn.Module:
    """The model of the checkpoint at `path`, its weights not loaded, as the strategy needs it
    for `build_policy(..., checkpoint=path)`: on the meta device for FSDP2 (sharded there), for
    DeepSpeed partitioned over the ranks as it is built (all ranks call it together). `kwargs`
    go to `from_config` (`attn_implementation`, ...)."""
    strategy = learner.strategy
    if strategy.name == "fsdp2":
        return build_empty_model(path, **kwargs)
    from olmorl.learner.deepspeed_policy import build_partitioned_model

    return build_partitioned_model(path, learner, strategy, device, DTYPES[dtype], **kwargs)


def build_policy(
    model: nn.Module,
    learner: LearnerConfig,
    device: str,
    world_size: int,
    dtype: str,
    checkpoint: str | None = None,
) -> ShardedPolicy:
    """The configured strategy around a Hugging Face model: a loaded float32 one, or one from
    `build_learner_model` whose weights are then read from `checkpoint` by rank 0 and land in
    each rank's shards."""
    strategy = learner.strategy
    if strategy.name == "fsdp2":
        policy = FSDP2Policy(model, learner, strategy, device, world_size, DTYPES[dtype])
        if checkpoint is not None:
            load_from_rank0(policy.model, checkpoint, device)
        return policy
    from olmorl.learner.deepspeed_policy import DeepSpeedPolicy, is_partitioned

    if checkpoint is not None:
        if not is_partitioned(model):
            raise ValueError(
                "DeepSpeed loads a checkpoint into a model built partitioned: build it with "
                "olmorl.learner.backend.build_learner_model"
            )
        # Before the engine: its float32 masters are copied from these partitions.
        load_from_rank0(model, checkpoint, device)
    return DeepSpeedPolicy(model, learner, strategy, device, world_size, DTYPES[dtype])

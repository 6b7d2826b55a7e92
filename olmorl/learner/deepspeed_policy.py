"""DeepSpeed ZeRO stage 3 behind `ShardedPolicy`: the alternative to FSDP2 for the same trainers.

Parameters, gradients and AdamW state are partitioned over the data-parallel ranks; master
weights stay float32 whether compute is float32 or bf16. The configuration is built here (no
launcher, no JSON file) so that a step means what it means under `FSDP2Policy`: every `backward`
adds its rank-averaged gradient, and only `step` clips and updates.
"""

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import deepspeed
import torch
import torch.distributed as dist
from torch import Tensor, nn

from olmorl.config import DeepSpeedStrategy, LearnerConfig
from olmorl.learner.backend import adamw

# One fixed checkpoint tag: a state directory holds exactly one state.
_TAG = "state"


class _EngineForward(nn.Module):
    """Calls the engine, not the model it wraps, yet names parameters as the Hugging Face model.

    The engine's forward is what lets ZeRO-3 accumulate: it counts micro-steps (a second backward
    adds to the gradient partitions instead of overwriting them) and hooks the backward prologue.
    """

    def __init__(self, engine: deepspeed.DeepSpeedEngine):
        super().__init__()
        self.engine = engine

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.engine(*args, **kwargs)

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, nn.Parameter]]:
        return self.engine.module.named_parameters(prefix, recurse, remove_duplicate)


def deepspeed_config(
    learner: LearnerConfig, strategy: DeepSpeedStrategy, bf16: bool
) -> dict[str, Any]:
    """The engine's configuration: ZeRO-3, caller-owned gradient accumulation, global clipping."""
    zero: dict[str, Any] = {"stage": 3}
    if strategy.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        # The worker calls `backward` once per packed row, a number that varies per step.
        # Unmanaged accumulation makes `step` the only boundary, so the count need not be known
        # in advance, and with one accumulation step no loss is divided by it.
        "managed_gradient_accumulation": False,
        "gradient_clipping": learner.max_grad_norm,
        "bf16": {"enabled": bf16},
        # As FSDP2Policy: gradients are reduced and accumulated in float32 under bf16 compute.
        "communication_data_type": "fp32",
        "data_types": {"grad_accum_dtype": "fp32"},
        "zero_optimization": zero,
        # Offload would otherwise insist on DeepSpeedCPUAdam; torch's AdamW keeps the update
        # identical to FSDP2Policy's.
        "zero_force_ds_cpu_optimizer": False,
    }


class DeepSpeedPolicy:
    """A ZeRO-3 engine around a float32 Hugging Face model, with torch AdamW on the partitions."""

    def __init__(
        self,
        model: nn.Module,
        learner: LearnerConfig,
        strategy: DeepSpeedStrategy,
        device: str,
        world_size: int,
        compute_dtype: torch.dtype,
    ):
        self.hf_config = model.config
        # DeepSpeed places each rank on device LOCAL_RANK, which its launchers set and Ray does
        # not; the worker has already chosen the device.
        os.environ.setdefault(
            "LOCAL_RANK", str(torch.cuda.current_device() if device == "cuda" else 0)
        )
        # ZeRO-3 calls these collectives several times a step, through names this torch deprecates.
        warnings.filterwarnings(
            "ignore",
            message=r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)`",
            category=FutureWarning,
        )
        if strategy.activation_checkpointing:
            # Non-reentrant: the recomputation is an ordinary autograd forward for ZeRO-3's
            # parameter hooks, where the reentrant variant splits backward into phases.
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        self.engine, *_ = deepspeed.initialize(
            model=model,
            optimizer=adamw(model.parameters(), learner),
            config=deepspeed_config(learner, strategy, bf16=compute_dtype == torch.bfloat16),
            dist_init_required=False,
        )
        self.engine.train()
        # The learner's forward applies the LM head's weight itself, outside lm_head's forward
        # (olmorl.learner.scoring): registered with the whole model, ZeRO-3 gathers it for the
        # model's forward and backward (the engine would also discover it on first use).
        deepspeed.zero.register_external_parameter(model, model.lm_head.weight)
        self.model = _EngineForward(self.engine)

    def backward(self, loss: Tensor) -> None:
        self.engine.backward(loss)

    def step(self, lr: float) -> float:
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        self.engine.step()
        return float(self.engine.get_global_grad_norm())

    def full_parameters(
        self, dtype: torch.dtype, device: str = "cpu"
    ) -> Iterator[tuple[str, Tensor | None]]:
        rank0 = dist.get_rank() == 0
        for name, param in self.engine.module.named_parameters():
            # Under bf16 these are the compute copies: the float32 masters already rounded.
            with deepspeed.zero.GatheredParameters([param]):
                full = param.data.to(device, dtype, copy=True) if rank0 else None
            # Yielded after the partition is restored: the caller may run its own collectives.
            yield name, full

    def save_state(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag=_TAG, save_latest=False)

    def load_state(self, directory: Path) -> None:
        # DeepSpeed reports a missing checkpoint as a bare assertion deep in its loader.
        if not (directory / _TAG).is_dir():
            raise FileNotFoundError(f"no DeepSpeed state {_TAG!r} in {directory}")
        self.engine.load_checkpoint(
            str(directory), tag=_TAG, load_optimizer_states=True, load_lr_scheduler_states=False
        )

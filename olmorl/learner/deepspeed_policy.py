"""DeepSpeed ZeRO stage 3 behind `ShardedPolicy`: the alternative to FSDP2 for the same trainers.

Parameters, gradients and AdamW state are partitioned over the data-parallel ranks; master
weights stay float32 whether compute is float32 or bf16. The configuration is built here (no
launcher, no JSON file) so that a step means what it means under `FSDP2Policy`: every `backward`
adds its rank-averaged gradient, and only `step` clips and updates. `build_partitioned_model`
builds the learner's model already partitioned (ZeRO-3's `zero.Init`), so that no rank holds a
full copy before `olmorl.learner.loading.load_from_rank0` fills it.
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
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.initialization import no_init_weights

from olmorl.config import DeepSpeedStrategy, LearnerConfig
from olmorl.learner.backend import adamw
from olmorl.learner.loading import build_empty_model

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


def prepare_process(device: str) -> None:
    """What DeepSpeed expects of the process before it partitions anything."""
    # DeepSpeed places each rank on device LOCAL_RANK, which its launchers set and Ray does
    # not; the worker has already chosen the device.
    os.environ.setdefault("LOCAL_RANK", str(torch.cuda.current_device() if device == "cuda" else 0))
    # ZeRO-3 calls these collectives several times a step, through names this torch deprecates.
    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)`",
        category=FutureWarning,
    )


def build_partitioned_model(
    path: str,
    learner: LearnerConfig,
    strategy: DeepSpeedStrategy,
    device: str,
    compute_dtype: torch.dtype,
    **kwargs: Any,
) -> nn.Module:
    """The causal LM of the checkpoint at `path`, its weights not loaded, partitioned over all
    ranks as it is built: each module's parameters are split as soon as its `__init__` returns,
    so a rank holds at most one module's whole. `kwargs` go to `from_config`.

    All ranks call it together. The parameters are in the training dtype, as `DeepSpeedPolicy`
    would have cast a loaded float32 model (its float32 masters come from them), partitioned as
    it partitions (same configuration, the whole world as data-parallel group).
    """
    prepare_process(device)
    config = AutoConfig.from_pretrained(path)
    ds_config = deepspeed_config(learner, strategy, bf16=compute_dtype == torch.bfloat16)
    # As transformers' own ZeRO-3 loading: no random initialisation of weights that the
    # checkpoint overwrites (under zero.Init it would gather every module to run).
    with no_init_weights(), deepspeed.zero.Init(config_dict_or_path=ds_config):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, **kwargs)
    model.tie_weights()  # no_init_weights also skips the tying done in post_init
    # zero.Init casts every floating tensor made in `__init__` to the training dtype, buffers
    # too: under bf16 the rotary frequencies would lose precision that the engine keeps for a
    # loaded model (it casts parameters only). The buffers are taken from the model built on
    # the meta device, where they are computed as usual.
    keep_buffers_of(build_empty_model(path, **kwargs), model)
    return model


def keep_buffers_of(source: nn.Module, model: nn.Module) -> None:
    """Replaces each buffer of `model` by `source`'s of the same name, on the device of the one
    it replaces."""
    for name, buffer in source.named_buffers(remove_duplicate=False):
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        setattr(module, attr, buffer.to(getattr(module, attr).device))


def is_partitioned(model: nn.Module) -> bool:
    """Whether the model was built partitioned (`build_partitioned_model`)."""
    return any(hasattr(param, "ds_id") for param in model.parameters())


class DeepSpeedPolicy:
    """A ZeRO-3 engine with torch AdamW on the partitions, around a Hugging Face model: a loaded
    float32 one, which it partitions, or one built partitioned (`build_partitioned_model`) and
    loaded since."""

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
        prepare_process(device)
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

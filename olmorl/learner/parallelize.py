"""Applies the learner strategy to a Hugging Face causal LM; model code never mentions FSDP.

FSDP2: each decoder layer is its own `fully_shard` unit (all-gathered just in time, resharded
after forward), then the root takes the embeddings, final norm and LM head. The model may be on
the meta device (`olmorl.learner.loading`) or on CPU: each unit moves its own shards to the mesh's
device, so no rank ever holds the whole model there.
"""

from typing import TYPE_CHECKING

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

if TYPE_CHECKING:  # the config needs pydantic; launch/learner_gpu_check.py runs without it
    from olmorl.config import FSDP2Strategy

# checkpoint_wrapper inserts this into the names of the parameters of the modules it wraps.
_WRAPPER_PREFIX = "_checkpoint_wrapped_module."


def hf_name(name: str) -> str:
    """A parameter's Hugging Face name (as in checkpoints and the rollout engines)."""
    return name.replace(_WRAPPER_PREFIX, "")


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of an HF causal LM (`model.model.layers`)."""
    return model.model.layers


def checkpoint_layers(model: torch.nn.Module, enabled: bool) -> torch.nn.ModuleList:
    """The decoder layers, each wrapped to recompute its activations in backward if `enabled`."""
    layers = decoder_layers(model)
    if enabled:
        for index, layer in enumerate(layers):
            layers[index] = checkpoint_wrapper(layer)
    return layers


def parallelize_fsdp2(
    model: torch.nn.Module, strategy: "FSDP2Strategy", mesh: DeviceMesh, param_dtype: torch.dtype
) -> torch.nn.Module:
    # Parameters and gradient reductions stay float32 when the model is; bf16 compute keeps
    # float32 reductions so summed gradients do not lose precision across ranks.
    mixed = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for layer in checkpoint_layers(model, strategy.activation_checkpointing):
        fully_shard(
            layer, mesh=mesh, reshard_after_forward=strategy.reshard_after_forward, mp_policy=mixed
        )
    # The root keeps the LM head: the learner's forward uses its weight directly
    # (olmorl.learner.scoring), inside the root's forward, where FSDP2 has gathered it; with
    # reshard_after_forward it is gathered again for backward.
    fully_shard(
        model, mesh=mesh, reshard_after_forward=strategy.reshard_after_forward, mp_policy=mixed
    )
    return model

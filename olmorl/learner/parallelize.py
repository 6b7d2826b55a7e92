"""Applies the learner strategy to a Hugging Face causal LM; model code never mentions FSDP.

FSDP2: each decoder layer is its own `fully_shard` unit (all-gathered just in time, resharded
after forward), then the root takes the embeddings, final norm and LM head.
"""

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from olmorl.config import FSDP2Strategy


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of an HF causal LM (`model.model.layers`)."""
    return model.model.layers


def parallelize_fsdp2(
    model: torch.nn.Module, strategy: FSDP2Strategy, mesh: DeviceMesh, param_dtype: torch.dtype
) -> torch.nn.Module:
    # Parameters and gradient reductions stay float32 when the model is; bf16 compute keeps
    # float32 reductions so summed gradients do not lose precision across ranks.
    mixed = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    layers = decoder_layers(model)
    for index, layer in enumerate(layers):
        if strategy.activation_checkpointing:
            layer = checkpoint_wrapper(layer)
            layers[index] = layer
        fully_shard(
            layer, mesh=mesh, reshard_after_forward=strategy.reshard_after_forward, mp_policy=mixed
        )
    # The root keeps the LM head: the learner's forward uses its weight directly
    # (olmorl.learner.scoring), and the root holds its parameters gathered until after backward.
    fully_shard(
        model, mesh=mesh, reshard_after_forward=strategy.reshard_after_forward, mp_policy=mixed
    )
    return model

"""Bytes per GPU, by part, of a learner rank and of a rollout engine; pure arithmetic.

The learner's parts follow what its code holds (olmorl/learner): float32 master weights,
gradients and AdamW moments sharded over the ranks (FSDP2 or ZeRO-3), one decoder layer's
parameters gathered in the compute dtype (and the next one prefetched), activations of one
micro-batch, the chunked LM head's few [chunk, vocab] float32 tensors, and the dense masks sdpa
and eager build for packed rows. launch/learner_gpu_check.py prints this against
`torch.cuda.max_memory_allocated` on a GPU.
"""

import math
from dataclasses import dataclass

from olmorl.plan.shapes import ModelShape

FLOAT32 = 4


@dataclass(frozen=True)
class LearnerSetup:
    """What a learner rank's memory depends on besides the model."""

    micro_batch_tokens: int
    """Tokens of one forward/backward (a packed row)."""
    world_size: int = 1
    """Ranks the weights, gradients and optimizer state are sharded over."""
    compute_bytes: int = 2
    """Bytes per element of the compute dtype: 2 for bfloat16, 4 for float32."""
    activation_checkpointing: bool = False
    offload_optimizer: bool = False
    """ZeRO-3's optimizer state in host memory."""
    chunk_tokens: int = 1024
    """Positions the LM head scores at once (`learner.logprob_chunk_tokens`)."""
    dense_masks: bool = True
    """sdpa and eager: a dense [T, T] mask per layer type, and one layer's [heads, T, T] scores
    at a time; flash-attn and flex hold neither."""


def activation_bytes_per_layer_token(shape: ModelShape, compute_bytes: int) -> int:
    """What autograd keeps per decoder layer and token. In the compute dtype: the residual stream
    into q..v (h), q, k, v and the attention output (2h + 2k), the MLP input (h) and gate, up,
    silu(gate) and their product (4i). In float32, as HF's RMSNorm keeps its input and output
    (8 bytes an element): QK-norm (h + k) and the two post-norms (2h). bfloat16: 32h + 12k + 8i
    bytes, checked against saved-tensor hooks on CPU."""
    h, k, i = shape.hidden_size, shape.kv_width, shape.intermediate_size
    return compute_bytes * (4 * h + 2 * k + 4 * i) + 2 * FLOAT32 * (3 * h + k)


def learner_bytes(shape: ModelShape, setup: LearnerSetup) -> dict[str, int]:
    """Bytes one learner rank holds at its peak (the backward of one micro-batch), by part."""
    n, h, c = shape.num_params, shape.hidden_size, setup.compute_bytes
    tokens = setup.micro_batch_tokens
    shard = math.ceil(n / setup.world_size)
    per_layer_token = activation_bytes_per_layer_token(shape, c)
    if setup.activation_checkpointing:
        # Each layer keeps its input; one layer at a time is recomputed whole.
        layers = shape.num_layers * tokens * h * c + tokens * per_layer_token
    else:
        layers = shape.num_layers * tokens * per_layer_token
    head = tokens * (2 * FLOAT32 * h + c * h + FLOAT32)  # final norm, its output, log Z
    head += 3 * min(setup.chunk_tokens, tokens) * shape.vocab_size * FLOAT32
    # Bool masks for the full and the sliding layers, and the kernel's scores of one layer. On
    # CPU (float32, sdpa) the estimate without the scores was 0.57-0.90 of the measured peak,
    # with them 1.08-1.11 (tests/unit/test_plan.py).
    masks = (2 + shape.num_heads * c) * tokens * tokens if setup.dense_masks else 0
    sharded = setup.world_size > 1 or c != FLOAT32
    return {
        "params": FLOAT32 * shard,
        "grads": FLOAT32 * shard,
        "adamw": 0 if setup.offload_optimizer else 2 * FLOAT32 * shard,
        # The layer in use and the one prefetched, plus the root's embeddings and head.
        "gathered": (2 * shape.layer_params + 2 * shape.vocab_size * h) * c if sharded else 0,
        "activations": layers + head,
        "attention": masks,
    }


def engine_weight_bytes(shape: ModelShape, tensor_parallel: int, weight_bytes: int = 2) -> int:
    """One GPU's share of an engine's weights."""
    return math.ceil(shape.num_params * weight_bytes / tensor_parallel)


def kv_cache_bytes(
    shape: ModelShape, sequences: int, context: int, tensor_parallel: int, kv_bytes: int = 2
) -> int:
    """KV cache one GPU of an engine needs for `sequences` of `context` tokens each: keys and
    values per layer, a sliding layer holding only its window. KV heads split over the
    tensor-parallel ranks (replicated when there are fewer heads than ranks)."""
    heads_per_rank = max(1, math.ceil(shape.num_kv_heads / tensor_parallel))
    per_token_layer = 2 * heads_per_rank * shape.head_dim * kv_bytes
    window = shape.sliding_window or context
    positions = sum(
        min(context, window) if kind == "sliding_attention" else context
        for kind in shape.layer_types
    )
    return sequences * positions * per_token_layer

"""The attention kernel of the learner's model: `model.attn_implementation` resolved per device.

Packed rows keep their documents apart through position ids that restart at 0
(`PackedRow.model_inputs`), whatever the kernel: flash_attention_2 runs the varlen kernel over
the documents' boundaries, flex_attention a block-sparse mask, sdpa a dense [T, T] mask per
layer type (full and sliding), which is why sdpa is the default on CPU only.
"""

from transformers.utils import is_flash_attn_2_available

DENSE_MASK_KERNELS = ("sdpa", "eager")
"""Kernels that keep a packed row's documents apart only with a dense [T, T] mask: the learner
batches such a row's documents padded instead, where that costs little padding."""


def resolve_attn_implementation(requested: str | None, device: str, dtype: str) -> str:
    """The `attn_implementation` to load the model with on `device` ("cuda" or "cpu").

    `requested` None picks: flash_attention_2 on CUDA when flash_attn is installed and compute is
    bfloat16, else flex_attention on CUDA, else sdpa. A request the device cannot run is an error
    here, before the weights load, not a kernel failure at the first step.
    """
    if requested is None:
        if device != "cuda":
            return "sdpa"
        if dtype == "bfloat16" and is_flash_attn_2_available():
            return "flash_attention_2"
        return "flex_attention"
    if requested == "flash_attention_2":
        if device != "cuda":
            raise ValueError(
                f"model.attn_implementation=flash_attention_2 needs CUDA, but this learner runs "
                f"on {device}; use flex_attention or sdpa, or leave it null to pick"
            )
        if not is_flash_attn_2_available():
            raise ImportError(
                "model.attn_implementation=flash_attention_2 needs the flash-attn package "
                "(pip install flash-attn); or use flex_attention, or leave it null to pick"
            )
    return requested


def common_attn_implementation(per_rank: list[str]) -> str:
    """The kernel every learner rank resolved, or a ValueError naming which rank took which.

    Ranks resolve on their own node (flash-attn may be installed on some nodes only); ranks that
    differ would compute the same step with different kernels and numerics, silently.
    """
    if len(set(per_rank)) == 1:
        return per_rank[0]
    ranks = ", ".join(f"rank {rank}: {kernel}" for rank, kernel in enumerate(per_rank))
    raise ValueError(
        f"the learner ranks resolved different attention kernels ({ranks}); install the same "
        "packages on every node, or set model.attn_implementation"
    )

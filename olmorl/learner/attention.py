"""The attention kernel of the learner's model: `model.attn_implementation` resolved per device.

Packed rows keep their documents apart through position ids that restart at 0
(`PackedRow.model_inputs`), whatever the kernel: flash_attention_2 runs the varlen kernel over
the documents' boundaries, flex_attention a block-sparse mask, sdpa a dense [T, T] mask per
layer type (full and sliding), which is why sdpa is the default on CPU only.
"""

from transformers.utils import is_flash_attn_2_available


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

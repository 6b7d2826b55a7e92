"""Model FLOPs per trained token and the utilisation they imply.

Counted as in the PaLM appendix: the matmuls of the forward (2 FLOPs per multiply-add), three
times that for forward and backward, recomputation under activation checkpointing not counted.
Attention scores and values cost 2·2·heads·head_dim FLOPs per query per attended key; a causal
query at position t attends t + 1 keys, at most the window on sliding layers, averaged over the
window's positions here (not the dense T² a masked kernel may actually compute).
"""

from olmorl.plan.shapes import ModelShape


def attended_keys(seq_len: int, window: int | None) -> float:
    """Mean number of keys a causal query attends over positions 0..seq_len-1."""
    if window is None or window >= seq_len:
        return (seq_len + 1) / 2
    # min(t + 1, window): a ramp up to the window, then flat.
    ramp = window * (window + 1) / 2
    return (ramp + (seq_len - window) * window) / seq_len


def training_flops_per_token(config, seq_len: int) -> float:
    """Forward plus backward FLOPs per token for a Hugging Face Olmo2/Olmo3-style config."""
    shape = ModelShape.from_config(config)
    attention = sum(
        2
        * 2
        * shape.num_heads
        * shape.head_dim
        * attended_keys(seq_len, shape.sliding_window if kind == "sliding_attention" else None)
        for kind in shape.layer_types
    )
    matmuls = shape.num_layers * shape.layer_matmul_params + shape.hidden_size * shape.vocab_size
    return 3 * (2 * matmuls + attention)

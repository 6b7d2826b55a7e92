"""Model FLOPs per trained token and the utilisation they imply.

Counted as in the PaLM appendix: the matmuls of the forward (2 FLOPs per multiply-add), three
times that for forward and backward, recomputation under activation checkpointing not counted.
Attention scores and values cost 2·2·heads·head_dim FLOPs per query per attended key; a causal
query at position t attends t + 1 keys, at most the window on sliding layers, averaged over the
window's positions here (not the dense T² a masked kernel may actually compute).
"""


def attended_keys(seq_len: int, window: int | None) -> float:
    """Mean number of keys a causal query attends over positions 0..seq_len-1."""
    if window is None or window >= seq_len:
        return (seq_len + 1) / 2
    # min(t + 1, window): a ramp up to the window, then flat.
    ramp = window * (window + 1) / 2
    return (ramp + (seq_len - window) * window) / seq_len


def training_flops_per_token(config, seq_len: int) -> float:
    """Forward plus backward FLOPs per token for a Hugging Face Olmo2/Olmo3-style config."""
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    per_layer_weights = (
        hidden * heads * head_dim  # q
        + 2 * hidden * kv_heads * head_dim  # k, v
        + heads * head_dim * hidden  # o
        + 3 * hidden * config.intermediate_size  # gate, up, down
    )
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * (
        config.num_hidden_layers
    )
    window = getattr(config, "sliding_window", None)
    attention = sum(
        2
        * 2
        * heads
        * head_dim
        * attended_keys(seq_len, window if kind == "sliding_attention" else None)
        for kind in layer_types
    )
    forward = 2 * (len(layer_types) * per_layer_weights + hidden * config.vocab_size) + attention
    return 3 * forward

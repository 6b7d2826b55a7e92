"""Model FLOPs per trained token (PaLM-style: 2 FLOPs per multiply-add of every matmul weight,
attention scores and values per attended key, times 3 for forward and backward) against
independent counts, and the matmul peak measured on CPU."""

import math
from types import SimpleNamespace

import pytest
import torch

from olmorl.learner.device import measure_matmul_flops
from olmorl.train.throughput import attended_keys, training_flops_per_token


def brute_force_keys(seq_len: int, window: int | None) -> float:
    """Mean over causal query positions of the keys each attends."""
    limit = seq_len if window is None else window
    return sum(min(t + 1, limit) for t in range(seq_len)) / seq_len


@pytest.mark.parametrize("seq_len", [1, 2, 7, 64, 100])
@pytest.mark.parametrize("window", [None, 1, 3, 64, 99, 100, 4096])
def test_attended_keys_is_the_mean_of_the_keys_each_query_sees(seq_len, window):
    assert attended_keys(seq_len, window) == pytest.approx(brute_force_keys(seq_len, window))


def test_attended_keys_of_full_attention_is_half_the_sequence_plus_one_half():
    assert attended_keys(8192, None) == 4096.5
    assert attended_keys(10, 4) == (1 + 2 + 3 + 4 * 7) / 10


def tiny_config(**overrides) -> SimpleNamespace:
    fields = {
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 96,
        "num_hidden_layers": 3,
        "vocab_size": 100,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
        "sliding_window": 4,
    }
    return SimpleNamespace(**{**fields, **overrides})


def test_training_flops_per_token_matches_a_hand_count():
    # head_dim 16; GQA with 2 key/value heads of 16.
    q, k, v, o = 64 * 64, 64 * 32, 64 * 32, 64 * 64
    mlp = 3 * 64 * 96  # gate, up, down
    head = 64 * 100  # the LM head; the embedding lookup is no matmul
    weights = 3 * (q + k + v + o + mlp) + head
    # seq_len 8: sliding layers (window 4) see 1, 2, 3, 4, 4, 4, 4, 4 keys; full ones 1..8.
    sliding_keys, full_keys = 26 / 8, 36 / 8
    # Per query and key: q·k and the weighted value, 2 FLOPs each over 4 heads × 16 dims.
    attention = 2 * 2 * 4 * 16 * (2 * sliding_keys + full_keys)
    expected = 3 * (2 * weights + attention)
    assert training_flops_per_token(tiny_config(), 8) == pytest.approx(expected)


def test_training_flops_without_layer_types_or_kv_heads_counts_full_attention_everywhere():
    config = tiny_config(layer_types=None, num_key_value_heads=None, sliding_window=None)
    weights = 3 * (4 * 64 * 64 + 3 * 64 * 96) + 64 * 100
    attention = 3 * 2 * 2 * 4 * 16 * (8 + 1) / 2
    assert training_flops_per_token(config, 8) == pytest.approx(3 * (2 * weights + attention))


def test_training_flops_use_an_explicit_head_dim():
    config = tiny_config(head_dim=32, layer_types=["full_attention"], num_hidden_layers=1)
    weights = (64 * 128 + 2 * 64 * 64 + 128 * 64 + 3 * 64 * 96) + 64 * 100
    attention = 2 * 2 * 4 * 32 * (8 + 1) / 2
    assert training_flops_per_token(config, 8) == pytest.approx(3 * (2 * weights + attention))


def test_training_flops_count_every_linear_weight_of_an_olmo3_model():
    """Against the model itself: the weight term is 6 FLOPs per parameter of every nn.Linear."""
    from transformers import Olmo3ForCausalLM

    from olmorl.models.tiny import build_tiny_config

    config = build_tiny_config("tiny", vocab_size=704, sliding_window=16)
    with torch.device("meta"):
        model = Olmo3ForCausalLM(config)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    seq_len = 64
    heads, head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    attention = sum(
        4
        * heads
        * head_dim
        * brute_force_keys(seq_len, 16 if kind == "sliding_attention" else None)
        for kind in config.layer_types
    )
    assert "sliding_attention" in config.layer_types and "full_attention" in config.layer_types
    assert training_flops_per_token(config, seq_len) == pytest.approx(3 * (2 * linear + attention))


def test_measure_matmul_flops_on_cpu_is_positive_and_finite():
    flops = measure_matmul_flops("cpu", torch.float32, size=64, seconds=0.05)
    assert math.isfinite(flops) and flops > 0

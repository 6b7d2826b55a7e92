"""Tiny Olmo 3 models from named presets, with deterministic random weights.

`write_tiny_model(out_dir)` writes a checkpoint directory (float32 safetensors, tokenizer,
generation config) that transformers and vLLM load with no network; tests and toy runs use it.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, Olmo3Config, Olmo3ForCausalLM

from olmorl.models.tokenizer import END_OF_TEXT_ID, IM_END_ID, PAD_ID, build_tiny_tokenizer
from olmorl.plan.shapes import olmo3_layer_types

ROPE_THETA = 5e5
# Olmo 3 uses a 4,096-token window; a small one makes the sliding layers matter on short sequences.
SLIDING_WINDOW = 64
MAX_POSITION_EMBEDDINGS = 1024
# Embedding rows are padded to a multiple of this, as real checkpoints do.
VOCAB_MULTIPLE = 64
# vLLM's CPU attention kernels reject smaller heads.
MIN_HEAD_DIM = 32


@dataclass(frozen=True)
class TinyModelPreset:
    """Shape of a tiny Olmo 3 model."""

    num_layers: int
    """Transformer blocks; sliding attention on three of every four, the last always full."""
    hidden_size: int
    """Width of the residual stream."""
    num_heads: int
    """Attention heads, as many key/value heads (no GQA)."""
    intermediate_size: int
    """Width of the SwiGLU MLP."""
    max_position_embeddings: int = MAX_POSITION_EMBEDDINGS
    """Longest prompt + response."""

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


TINY_PRESETS: dict[str, TinyModelPreset] = {
    "tiny": TinyModelPreset(num_layers=4, hidden_size=128, num_heads=4, intermediate_size=512),
    "small": TinyModelPreset(num_layers=8, hidden_size=256, num_heads=8, intermediate_size=1024),
    # ~0.6B parameters: for throughput benchmarks on GPUs (launch/bench_gpu.sh), where a tiny
    # model would measure per-step overheads rather than generation and training.
    "bench-0.6b": TinyModelPreset(
        num_layers=24,
        hidden_size=1280,
        num_heads=20,
        intermediate_size=5120,
        max_position_embeddings=8192,
    ),
}


def get_preset(name: str) -> TinyModelPreset:
    """The preset called `name`, or a ValueError listing the valid names."""
    if name not in TINY_PRESETS:
        raise ValueError(
            f"unknown tiny model preset {name!r}; valid presets: {sorted(TINY_PRESETS)}"
        )
    return TINY_PRESETS[name]


def padded_vocab_size(num_tokens: int) -> int:
    """`num_tokens` rounded up to a multiple of VOCAB_MULTIPLE."""
    return -(-num_tokens // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def build_tiny_config(
    preset: str | TinyModelPreset, vocab_size: int, sliding_window: int = SLIDING_WINDOW
) -> Olmo3Config:
    """The Olmo3Config of a preset (a name or a shape), with the special token ids of
    `build_tiny_tokenizer()`."""
    shape = preset if isinstance(preset, TinyModelPreset) else get_preset(preset)
    if shape.hidden_size % shape.num_heads or shape.head_dim < MIN_HEAD_DIM:
        raise ValueError(f"preset {preset!r} needs a head_dim of at least {MIN_HEAD_DIM}: {shape}")
    rope = {"rope_type": "default", "rope_theta": ROPE_THETA}
    return Olmo3Config(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rope_parameters={"sliding_attention": dict(rope), "full_attention": dict(rope)},
        sliding_window=sliding_window,
        layer_types=list(olmo3_layer_types(shape.num_layers)),
        tie_word_embeddings=False,
        pad_token_id=PAD_ID,
        bos_token_id=END_OF_TEXT_ID,
        eos_token_id=END_OF_TEXT_ID,
        dtype=torch.float32,
    )


def build_tiny_model(preset: str = "tiny", *, vocab_size: int, seed: int = 0) -> Olmo3ForCausalLM:
    """A float32 Olmo 3 model of the preset's shape; the same weights for the same seed."""
    config = build_tiny_config(preset, vocab_size)
    # fork_rng: seed the initialisation without touching the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Olmo3ForCausalLM(config)
    model.generation_config = build_generation_config()
    return model.eval()


def build_generation_config() -> GenerationConfig:
    """Stop at the end of a chat turn or at the end of text, as Olmo 3 Instruct does."""
    return GenerationConfig(
        bos_token_id=END_OF_TEXT_ID,
        eos_token_id=[IM_END_ID, END_OF_TEXT_ID],
        pad_token_id=PAD_ID,
    )


def ensure_tiny_model(path: str | Path, preset: str) -> bool:
    """Writes the preset's model (seed 0) to `path` unless something is there; True if it did.

    Written beside `path` and renamed, so a job killed meanwhile leaves no half-written model.
    """
    path = Path(path)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}-") as tmp:
        write_tiny_model(Path(tmp) / "model", preset)
        os.rename(Path(tmp) / "model", path)
    return True


def write_tiny_model(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Write model, tokenizer and generation config of a tiny model to `out_dir`; return it."""
    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(preset, vocab_size=padded_vocab_size(len(tokenizer)), seed=seed)
    model.save_pretrained(out_dir)
    tokenizer.model_max_length = get_preset(preset).max_position_embeddings
    tokenizer.save_pretrained(out_dir)
    return out_dir

"""Model shapes the planner sizes memory from, without loading weights or reaching a hub."""

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on in an Olmo 3 decoder."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    sliding_window: int | None
    """Window of the sliding-attention layers; None: every layer attends to the whole context."""
    layer_types: tuple[str, ...]
    """Per layer, "sliding_attention" or "full_attention"."""
    explicit_head_dim: int | None = None
    """A config's `head_dim` where it sets one; else hidden size / heads, as in Olmo 3."""

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim or self.hidden_size // self.num_heads

    @property
    def kv_width(self) -> int:
        """Key (or value) features per token: KV heads × head dim."""
        return self.num_kv_heads * self.head_dim

    @property
    def layer_matmul_params(self) -> int:
        """Weights of a decoder layer's matmuls: q, o, k, v and the MLP's gate, up and down."""
        h, q, k, i = (
            self.hidden_size,
            self.num_heads * self.head_dim,
            self.kv_width,
            self.intermediate_size,
        )
        return 2 * h * q + 2 * h * k + 3 * h * i

    @property
    def layer_params(self) -> int:
        """A decoder layer's matmul weights and its norms (QK-norm and the two post-norms)."""
        h, q, k = self.hidden_size, self.num_heads * self.head_dim, self.kv_width
        return self.layer_matmul_params + q + k + 2 * h

    @property
    def num_params(self) -> int:
        """Layers, untied input and output embeddings, the final norm."""
        return (
            self.num_layers * self.layer_params
            + 2 * self.vocab_size * self.hidden_size
            + (self.hidden_size)
        )

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        """From a Hugging Face Olmo3 config (object or config.json mapping)."""
        get = config.get if isinstance(config, dict) else lambda key: getattr(config, key, None)
        layers = get("num_hidden_layers")
        return cls(
            num_layers=layers,
            hidden_size=get("hidden_size"),
            num_heads=get("num_attention_heads"),
            num_kv_heads=get("num_key_value_heads") or get("num_attention_heads"),
            intermediate_size=get("intermediate_size"),
            vocab_size=get("vocab_size"),
            sliding_window=get("sliding_window"),
            layer_types=tuple(get("layer_types") or ["full_attention"] * layers),
            explicit_head_dim=get("head_dim"),
        )


def olmo3_layer_types(num_layers: int) -> tuple[str, ...]:
    """Sliding attention on three of every four layers, every fourth and the last full."""
    return tuple(
        "full_attention" if (i + 1) % 4 == 0 or i == num_layers - 1 else "sliding_attention"
        for i in range(num_layers)
    )


OLMO3_7B = ModelShape(32, 4096, 32, 32, 11008, 100278, 4096, olmo3_layer_types(32))
OLMO3_32B = ModelShape(64, 5120, 40, 8, 27648, 100278, 4096, olmo3_layer_types(64))
"""The released Olmo 3 architectures (the 32B with grouped-query attention, 8 KV heads)."""


def model_shape(path: str) -> ModelShape:
    """The shape of `path`: its config.json when it is a local checkpoint, else an Olmo 3 hub
    name's (7B or 32B). Raises ValueError naming the path when neither applies."""
    config = Path(path) / "config.json"
    if config.is_file():
        return ModelShape.from_config(json.loads(config.read_text()))
    name = path.lower()
    if "olmo-3" in name and "32b" in name:
        return OLMO3_32B
    if "olmo-3" in name and "7b" in name:
        return OLMO3_7B
    raise ValueError(
        f"model.path={path}: no config.json there, and not an Olmo 3 7B or 32B hub name; "
        "the planner needs the model's shape (download the config, or name a local checkpoint)"
    )

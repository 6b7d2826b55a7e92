"""Long-context extension with YaRN on the full-attention layers only (Olmo 3's recipe).

Olmo 3 alternates sliding-window layers (plain RoPE: they never see past the window, so their
positions need no stretching) with full-attention layers, which are the ones YaRN rescales. Hugging
Face Olmo3 configs express this with `rope_parameters` keyed by layer type; transformers builds one
rotary table per type, and vLLM 0.32 serves Olmo3 through its transformers backend, so both read
the same per-layer rope from a standard checkpoint. vLLM's length check treats YaRN's
`max_position_embeddings` as already scaled, which is how this writes it.
"""

import json
import shutil
from pathlib import Path
from typing import Any

FULL, SLIDING = "full_attention", "sliding_attention"


class LongContextError(ValueError):
    """A checkpoint that cannot be extended as asked; the message names it."""


def yarn_config(config: dict[str, Any], factor: float, source: str = "config") -> dict[str, Any]:
    """A copy of an Olmo3 config.json dict whose full-attention layers use YaRN with `factor`
    (from the current context length) and whose sliding-window layers keep their rope."""
    if factor <= 1:
        raise LongContextError(f"{source}: the YaRN factor must be above 1, got {factor}")
    layer_types = config.get("layer_types") or []
    if FULL not in layer_types:
        raise LongContextError(f"{source}: no full-attention layers (layer_types) to extend")
    rope = config.get("rope_parameters") or {}
    per_type = (
        {kind: dict(rope[kind]) for kind in set(layer_types)}
        if set(layer_types) <= set(rope)
        else {kind: dict(rope) for kind in set(layer_types)}
    )
    full = per_type[FULL]
    if full.get("rope_type", "default") != "default":
        raise LongContextError(
            f"{source}: the full-attention layers already use {full['rope_type']!r} rope; extend "
            "from the checkpoint before it rather than scaling twice"
        )
    original = int(config["max_position_embeddings"])
    per_type[FULL] = {
        "rope_type": "yarn",
        "rope_theta": full.get("rope_theta", rope.get("rope_theta")),
        "factor": float(factor),
        "original_max_position_embeddings": original,
    }
    return {
        **config,
        "rope_parameters": per_type,
        "max_position_embeddings": int(original * factor),
    }


def write_yarn_checkpoint(source: str | Path, out: str | Path, factor: float) -> Path:
    """Copies the Hugging Face checkpoint `source` to `out` with `yarn_config` applied; the
    weights are unchanged (YaRN changes only the rotary frequencies)."""
    source, out = Path(source), Path(out)
    config_path = source / "config.json"
    if not config_path.is_file():
        raise LongContextError(f"{source}: no config.json; not a Hugging Face checkpoint")
    config = yarn_config(json.loads(config_path.read_text()), factor, str(config_path))
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("train_state", "trainer_state.json"))
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out

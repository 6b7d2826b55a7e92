"""Hugging Face checkpoints written atomically: a temporary directory, then one rename.

A crash mid-write leaves the previous checkpoint intact and a `.tmp-*` directory to ignore.
"""

from pathlib import Path

from safetensors.torch import save_file
from torch import Tensor
from transformers import AutoTokenizer, GenerationConfig, PretrainedConfig

from olmorl.io import atomic_directory


def write_hf_checkpoint(
    state: dict[str, Tensor],
    config: PretrainedConfig,
    source: str,
    out_dir: str | Path,
    atomic: bool = True,
) -> Path:
    """Saves weights, config, generation config and the source model's tokenizer to `out_dir`.

    With `atomic` false the files go straight into `out_dir`, for a caller that writes more
    beside them (training state) and renames the whole directory itself.
    """
    if atomic:
        with atomic_directory(out_dir) as tmp:
            _write(state, config, source, tmp)
    else:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        _write(state, config, source, Path(out_dir))
    return Path(out_dir)


def _write(state: dict[str, Tensor], config: PretrainedConfig, source: str, out: Path) -> None:
    config = config.__class__.from_dict(config.to_dict())
    config.use_cache = True  # the learner turns the cache off; inference wants it
    config.save_pretrained(out)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        out / "model.safetensors",
        metadata={"format": "pt"},
    )
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    try:
        GenerationConfig.from_pretrained(source).save_pretrained(out)
    except OSError:
        pass  # a checkpoint without generation_config.json is still loadable

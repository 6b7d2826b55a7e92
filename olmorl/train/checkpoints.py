"""Resumable checkpoints of the offline trainers: a Hugging Face model plus the training state.

    checkpoints/step_000040/
        config.json, model.safetensors, tokenizer files   (loads in transformers and vLLM)
        train_state/                                      (each rank's weights and optimizer)
        trainer_state.json                                (step, data position, file manifest)

The directory is written beside its final name and renamed, so a crash never leaves half a
checkpoint under a step name. A checkpoint whose files no longer match the manifest (a truncated
copy, a disk fault) is reported and passed over for the one before it.
"""

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from olmorl.io import atomic_directory, atomic_write_text

CHECKPOINTS_DIR = "checkpoints"
TRAIN_STATE_DIR = "train_state"
TRAINER_STATE_NAME = "trainer_state.json"

logger = logging.getLogger(__name__)


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS_DIR / f"step_{step:06d}"


def write_checkpoint(
    run_dir: Path,
    step: int,
    trainer_state: Mapping[str, Any],
    write_model_and_state: Callable[[Path], None],
    keep: int = 0,
) -> Path:
    """Writes step `step`'s checkpoint atomically and keeps the newest `keep` (0: all).

    `write_model_and_state(dir)` fills `dir` with the model files and TRAIN_STATE_DIR; the
    trainer state with a manifest of every file's size goes last.
    """
    out = checkpoint_path(run_dir, step)
    with atomic_directory(out) as tmp:
        write_model_and_state(tmp)
        manifest = {
            str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()
        }
        state = {"step": step, **trainer_state, "manifest": manifest}
        atomic_write_text(tmp / TRAINER_STATE_NAME, json.dumps(state, indent=1))
    # Checkpoints of later steps are from an attempt that died and was resumed from an earlier
    # one: stale (perhaps damaged), never to be resumed from or counted as kept.
    later = [p for p in _step_dirs(run_dir) if p.name > out.name]
    kept = sorted(p for p in _step_dirs(run_dir) if p not in later)
    for old in later + (kept[:-keep] if keep else []):
        shutil.rmtree(old, ignore_errors=True)
    return out


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest intact checkpoint and its trainer state, or None if there is none."""
    for path in sorted(_step_dirs(run_dir), reverse=True):
        problem = _problem(path)
        if problem is None:
            return path, json.loads((path / TRAINER_STATE_NAME).read_text())
        logger.warning("checkpoint %s is unusable (%s); trying the one before it", path, problem)
    return None


def _step_dirs(run_dir: Path) -> list[Path]:
    root = run_dir / CHECKPOINTS_DIR
    return [p for p in root.glob("step_*") if p.is_dir()] if root.is_dir() else []


def _problem(path: Path) -> str | None:
    """What is wrong with a checkpoint directory, or None if it matches its manifest."""
    try:
        state = json.loads((path / TRAINER_STATE_NAME).read_text())
        manifest = state["manifest"]
        int(state["step"])
    except FileNotFoundError:
        return f"no {TRAINER_STATE_NAME}"
    except (ValueError, KeyError, TypeError) as e:
        return f"{TRAINER_STATE_NAME} is damaged: {type(e).__name__}: {e}"
    for name, size in manifest.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {size}"
    return None

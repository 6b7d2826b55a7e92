"""The DPO run config: preference pairs, the loss, the reference cache, learner and run parts.

Olmo 3 DPO (design §3, Table 48): `dpo_norm` with β = 5, one epoch, 128 pairs per step, linear
decay after 10% warm-up.
"""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from olmorl.config.base import StrictConfig
from olmorl.config.components import (
    LearnerConfig,
    ModelConfig,
    OfflineDataConfig,
    TrainerRunConfig,
)


class PreferenceLossConfig(StrictConfig):
    kind: Literal["dpo", "dpo_norm", "simpo"] = "dpo_norm"
    """`dpo` (summed log-probs), `dpo_norm` (per-token averages; Olmo 3) or `simpo` (no reference)."""
    beta: float = Field(default=5.0, gt=0)
    """β, the scale of the implicit reward."""
    gamma: float = Field(default=0.0, ge=0)
    """SimPO's target margin γ in reward units; only `simpo` takes it."""

    @model_validator(mode="after")
    def _gamma_is_simpo_only(self) -> Self:
        if self.gamma and self.kind != "simpo":
            raise ValueError(f"loss.gamma is SimPO's margin; loss.kind is {self.kind!r}")
        return self


class DPOTrainConfig(StrictConfig):
    epochs: int = Field(default=1, ge=1)
    """Passes over the pairs (unless run.steps is set)."""
    pairs_per_step: int = Field(default=128, ge=1)
    """Global batch in preference pairs."""
    eval_every: int = Field(default=0, ge=0)
    """Held-out preference accuracy every this many steps (also at the start and the end)."""
    reference_cache: str | None = None
    """Directory of cached reference log-probs, keyed by the model's files and the tokenized
    pairs, reused by later runs; null: `<run.output_dir>/reference_logps`."""

    def reference_cache_dir(self, output_dir: str) -> Path:
        return Path(self.reference_cache or Path(output_dir) / "reference_logps")


class DPOConfig(StrictConfig):
    model: ModelConfig
    """Checkpoint to train; it is also the frozen reference."""
    data: OfflineDataConfig
    """Preference data sets (Dolci DPO schema)."""
    learner: LearnerConfig = LearnerConfig()
    """Learner workers, strategy and optimizer."""
    loss: PreferenceLossConfig = PreferenceLossConfig()
    """The preference loss."""
    train: DPOTrainConfig = DPOTrainConfig()
    """Batch size, epochs, evaluation, reference cache."""
    run: TrainerRunConfig = TrainerRunConfig()
    """Outputs, seed, checkpoints."""

    @model_validator(mode="after")
    def _pairs_fit(self) -> Self:
        if self.data.max_tokens > self.learner.micro_batch_tokens:
            raise ValueError(
                f"data.max_tokens ({self.data.max_tokens}) is more than "
                f"learner.micro_batch_tokens ({self.learner.micro_batch_tokens}); a pair's "
                "chosen and rejected sequences must fit in one packed row"
            )
        return self

"""The SFT run config: chat data, token-sized global batches, the shared learner and run parts.

Olmo 3 SFT (design §3): 1M-token batches, two epochs, LR 5e-5 (Think) / 8e-5 (Instruct), linear
decay; two runs at different rates are souped (`olmorl soup`).
"""

from typing import Self

from pydantic import Field, model_validator

from olmorl.config.base import StrictConfig
from olmorl.config.components import (
    LearnerConfig,
    ModelConfig,
    OfflineDataConfig,
    TrainerRunConfig,
)


class SFTTrainConfig(StrictConfig):
    epochs: int = Field(default=1, ge=1)
    """Passes over the training data (unless run.steps is set)."""
    tokens_per_step: int = Field(default=65_536, ge=2)
    """Global batch in tokens: conversations are taken in data order until the next would not
    fit. The step's packed rows are accumulated micro-batch by micro-batch on every rank."""
    eval_every: int = Field(default=0, ge=0)
    """Held-out loss every this many steps (also at the start and the end); 0: start and end."""


class SFTConfig(StrictConfig):
    model: ModelConfig
    """Checkpoint to fine-tune."""
    data: OfflineDataConfig
    """Chat data sets (Dolci SFT schema: `messages`); the loss covers assistant turns only."""
    learner: LearnerConfig = LearnerConfig()
    """Learner workers, strategy and optimizer."""
    train: SFTTrainConfig = SFTTrainConfig()
    """Batch size, epochs, evaluation."""
    run: TrainerRunConfig = TrainerRunConfig()
    """Outputs, seed, checkpoints."""

    @model_validator(mode="after")
    def _examples_fit(self) -> Self:
        for key, budget in (
            ("learner.micro_batch_tokens", self.learner.micro_batch_tokens),
            ("train.tokens_per_step", self.train.tokens_per_step),
        ):
            if self.data.max_tokens > budget:
                raise ValueError(
                    f"data.max_tokens ({self.data.max_tokens}) is more than {key} ({budget}); "
                    "the longest conversation must fit in one packed row and one step"
                )
        return self

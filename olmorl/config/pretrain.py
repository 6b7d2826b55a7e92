"""The pretraining run config, which midtraining and long-context extension reuse: a weighted mix
of token sources cut into fixed-length windows, the learner, and the run.

Olmo 3 (design §3): pretraining on Dolma 3 at 8,192 tokens; midtraining on the Dolmino mix with
a linear decay from the pretraining rate; long-context extension on longer windows. Each is one
YAML of this trainer with its own sources, weights, window length and schedule.
"""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from olmorl.config.base import StrictConfig
from olmorl.config.components import LearnerConfig, ModelConfig, RunConfig


class TokenSourceConfig(StrictConfig):
    path: str
    """A token array (`.npy` from `olmorl data tokenize`, or a headerless Dolma array) or a text
    file (.jsonl / .json / .parquet, tokenized when the run loads it)."""
    weight: float = Field(default=1.0, gt=0)
    """Relative share of the stream (normalised over the sources)."""
    name: str | None = None
    """Label in metrics (`mix/<name>`); default: the file's stem."""
    raw_dtype: Literal["uint16", "uint32"] = "uint32"
    """Token dtype of a headerless array (Dolma ships uint32)."""

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


class PretrainDataConfig(StrictConfig):
    sources: list[TokenSourceConfig] = Field(min_length=1)
    """The training mix, a list of {path, weight (relative share, default 1), name (for
    `mix/<name>`), raw_dtype (uint32 or uint16, for headerless arrays)}."""
    eval: list[str] = Field(default_factory=list)
    """Held-out token arrays or text files: loss and perplexity on their windows."""
    seq_len: int = Field(default=8192, ge=2)
    """Tokens per window (the context trained on); documents are packed across boundaries."""
    seq_len_schedule: dict[int, int] = Field(default_factory=dict)
    """Longer windows from a given step on, e.g. {200: 16384, 400: 32768}: the long-context
    stage's length schedule within one run. Each length reads its own pass over the sources."""
    document_mask: bool = False
    """Attention (and positions) restart at every document inside a window; the first token of
    each document then leaves the loss."""
    text_field: str = "text"
    """Field holding a document's text in text sources."""

    @model_validator(mode="after")
    def _labels_unique(self) -> Self:
        labels = [source.label for source in self.sources]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(
                f"data.sources: {', '.join(repeated)} named twice; give each a distinct `name`"
            )
        stems = [Path(path).stem for path in self.eval]
        repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
        if repeated:
            raise ValueError(
                f"data.eval: more than one file is called {', '.join(repeated)}; their metrics "
                "(eval/<file name>/loss) would clash"
            )
        return self


class LongContextConfig(StrictConfig):
    yarn_factor: float = Field(gt=1)
    """Context extension factor: the start checkpoint's full-attention layers get YaRN with it
    (the sliding-window layers keep their rope) and max_position_embeddings grows by it."""


class PretrainTrainConfig(StrictConfig):
    tokens_per_step: int = Field(default=4_194_304, ge=2)
    """Global batch in tokens, a whole number of windows (Olmo 3 7B: 4M = 512 × 8,192)."""
    z_loss: float = Field(default=0.0, ge=0)
    """Weight of the z-loss (mean squared logsumexp of the logits); 0 turns it off."""
    eval_every: int = Field(default=0, ge=0)
    """Held-out loss every this many steps (also at the start and the end); 0: start and end."""
    eval_tokens: int = Field(default=1_048_576, ge=1)
    """Held-out tokens scored per evaluation at most, per eval source (its first windows)."""
    peak_flops_per_device: float | None = Field(default=None, gt=0)
    """Model FLOP utilisation's denominator per learner rank (e.g. 989e12 for an H100's dense
    bf16); null measures a matmul on the learners at the start and says so in the log."""


class PretrainConfig(StrictConfig):
    model: ModelConfig
    """Checkpoint to train (a random-init preset for a pretraining run from scratch)."""
    data: PretrainDataConfig
    """Sources, their weights, the window length."""
    learner: LearnerConfig = LearnerConfig()
    """Learner workers, strategy, optimizer and schedule (`wsd`, `cosine`, `linear`)."""
    train: PretrainTrainConfig = PretrainTrainConfig()
    """Batch, z-loss, evaluation, MFU."""
    long_context: LongContextConfig | None = None
    """Extend the context with YaRN before training (the long-context stage); null: no change."""
    run: RunConfig = RunConfig()
    """Steps, outputs, seed, checkpoints."""

    @model_validator(mode="after")
    def _windows_fit(self) -> Self:
        for start, seq_len in self.length_phases:
            key = "data.seq_len" if start == 1 else f"data.seq_len_schedule[{start}]"
            if seq_len < 2:
                raise ValueError(f"{key} must be at least 2, got {seq_len}")
            if start < 1:
                raise ValueError(f"{key}: steps count from 1")
            if self.train.tokens_per_step % seq_len:
                raise ValueError(
                    f"train.tokens_per_step ({self.train.tokens_per_step}) must be a multiple of "
                    f"{key} ({seq_len})"
                )
            if self.learner.micro_batch_tokens < seq_len:
                raise ValueError(
                    f"learner.micro_batch_tokens ({self.learner.micro_batch_tokens}) is less than "
                    f"{key} ({seq_len}); a window must fit in one packed row"
                )
        return self

    @property
    def length_phases(self) -> list[tuple[int, int]]:
        """(first step, window length) of each phase of the length schedule, in order."""
        return sorted({1: self.data.seq_len, **self.data.seq_len_schedule}.items())

    def seq_len_at(self, step: int) -> int:
        return [seq_len for start, seq_len in self.length_phases if start <= step][-1]

    def windows_per_step(self, step: int) -> int:
        return self.train.tokens_per_step // self.seq_len_at(step)

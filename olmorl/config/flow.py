"""The flow config: the stages of the Olmo 3 model flow, in order, each a recipe of its trainer.

Each stage starts from the checkpoint the one before it ended with (its recipe's `model.path`
is overridden); the first starts from its recipe's own model.
"""

from typing import Literal, Self

from pydantic import Field, model_validator

from olmorl.config.base import StrictConfig


class FlowStage(StrictConfig):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """The stage's directory under the flow's, e.g. `sft`."""
    kind: Literal["pretrain", "sft", "dpo", "rl"]
    """Which trainer runs the recipe (`pretrain` also runs midtraining and long-context)."""
    recipe: str
    """The stage's recipe YAML, relative to the working directory."""
    overrides: list[str] = Field(default_factory=list)
    """Dotted overrides applied to the recipe, as on the command line."""


class FlowConfig(StrictConfig):
    stages: list[FlowStage] = Field(min_length=1)
    """Run in this order; a stage that finished is skipped when the flow runs again."""
    output_dir: str = "runs"
    """Where the flow's directory is made (`<output_dir>/<name>`)."""
    name: str | None = None
    """The flow's directory name; null: the flow file's name."""
    report_eval: str | None = None
    """RL rows of the `math` verifier that `report.md` samples greedily after every stage (and
    from the starting model); null: the report has each stage's own metric only."""

    @model_validator(mode="after")
    def _stage_names_unique(self) -> Self:
        names = [stage.name for stage in self.stages]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(repeated)}")
        return self

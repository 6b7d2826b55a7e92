"""Config classes shared by the trainers: model, learner (FSDP2 or DeepSpeed), data, run outputs."""

from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from olmorl.config.base import StrictConfig


class ModelConfig(StrictConfig):
    path: str
    """Hugging Face directory or hub name of the checkpoint to start from."""
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Parameter dtype on the learners and the rollout engines."""
    max_position_embeddings: int | None = Field(default=None, ge=1)
    """Override of the model's context length; null keeps the checkpoint's value."""
    preset: Literal["tiny", "small", "bench-0.6b"] | None = None
    """A random-init Olmo3 preset (`olmorl tiny-model`): when `path` does not exist, the job
    writes that model and its tokenizer there first, so a tiny recipe needs no set-up step."""
    attn_implementation: Literal["flash_attention_2", "flex_attention", "sdpa"] | None = None
    """Attention kernel of the learners' model. Null picks one that builds no dense [T, T] mask
    for packed rows: flash_attention_2 on CUDA when flash_attn is installed and dtype is
    bfloat16, else flex_attention on CUDA, else sdpa (CPU learners). sdpa's masks take
    T² bytes per layer type (1.4 GB at T = 36,864)."""

    @model_validator(mode="after")
    def _flash_attention_needs_bfloat16(self) -> Self:
        if self.attn_implementation == "flash_attention_2" and self.dtype != "bfloat16":
            raise ValueError(
                f"model.attn_implementation=flash_attention_2 needs model.dtype=bfloat16 (got "
                f"{self.dtype}); use flex_attention or sdpa for float32"
            )
        return self


class FSDP2Strategy(StrictConfig):
    name: Literal["fsdp2"] = "fsdp2"
    """PyTorch FSDP2 (`fully_shard`), the default learner strategy."""
    reshard_after_forward: bool = True
    """Free gathered parameters after forward (ZeRO-3 like); false keeps them (ZeRO-2 like)."""
    activation_checkpointing: bool = False
    """Recompute activations in backward to save memory."""


class DeepSpeedStrategy(StrictConfig):
    name: Literal["deepspeed"] = "deepspeed"
    """DeepSpeed ZeRO stage 3, the alternative learner strategy."""
    offload_optimizer: bool = False
    """Keep optimizer state in CPU memory."""
    activation_checkpointing: bool = False
    """Recompute activations in backward to save memory."""


LearnerStrategy = Annotated[FSDP2Strategy | DeepSpeedStrategy, Field(discriminator="name")]


def custom_ray_resources(value: dict[str, float]) -> dict[str, float]:
    """`ray_resources` names custom resources only: CPUs and GPUs are what olmorl itself asks."""
    builtin = sorted(set(value) & {"CPU", "GPU", "memory", "object_store_memory"})
    if builtin:
        raise ValueError(
            f"{', '.join(builtin)} cannot be a custom resource; olmorl asks for CPUs and GPUs itself"
        )
    return value


class LearnerConfig(StrictConfig):
    num_workers: int = Field(default=1, ge=1)
    """Learner processes (one per GPU), forming one data-parallel group."""
    strategy: LearnerStrategy = FSDP2Strategy()
    """How parameters are sharded: `fsdp2` or `deepspeed` (a name or a mapping with `name`)."""
    lr: float = Field(default=1e-6, gt=0, le=1.0)
    """AdamW peak learning rate (constant in RL, as in Olmo 3)."""
    lr_schedule: Literal["constant", "linear", "cosine", "wsd"] = "constant"
    """After warm-up: stay at `lr`, or decay linearly or by a cosine to final_lr_fraction·lr, or
    `wsd` (warmup-stable-decay): stay at `lr`, then decay linearly over the run's last
    decay_fraction of steps."""
    warmup_fraction: float = Field(default=0.0, ge=0, lt=1)
    """Share of the run's optimizer steps over which the rate rises linearly to `lr`."""
    final_lr_fraction: float = Field(default=0.0, ge=0, le=1)
    """Where `linear`, `cosine` and `wsd` end, as a fraction of `lr`."""
    decay_fraction: float = Field(default=0.1, gt=0, le=1)
    """`wsd`: share of the run's optimizer steps, at its end, over which the rate decays."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay; Olmo 3 RL uses none."""
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradient clipping threshold on the global norm."""
    micro_batch_tokens: int = Field(default=16_384, ge=16)
    """Token budget of one packed micro-batch row."""
    logprob_chunk_tokens: int = Field(default=1024, ge=1)
    """Positions whose logits the learner holds at once when scoring tokens, forward and
    backward: the LM head's memory is a few float32 [chunk, vocab] tensors (0.4 GB each at 1,024
    × 100K), not [micro_batch_tokens, vocab]."""
    cpu_cores: list[int] | None = None
    """CPU machines: cores every learner rank's threads are pinned to. Disjoint from
    rollout.cpu_cores, training and generation overlap instead of time-slicing (as GPUs are
    disjoint on a cluster)."""
    ray_resources: dict[str, float] = Field(default_factory=dict)
    """Custom Ray resources each learner rank asks for besides its CPU and GPU, e.g.
    `{learner_node: 1}`: only nodes started with `ray start --resources` holding them take a
    rank, which pins the ranks to those nodes."""

    @field_validator("ray_resources")
    @classmethod
    def _custom_only(cls, value: dict[str, float]) -> dict[str, float]:
        return custom_ray_resources(value)

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_from_name(cls, value: object) -> object:
        # `strategy: deepspeed` is the common spelling, and a mapping without `name` tunes the
        # default strategy; the tagged union itself needs a mapping with its tag.
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" not in value:
            return {"name": FSDP2Strategy().name, **value}
        return value

    @model_validator(mode="after")
    def _wsd_fits(self) -> Self:
        if self.lr_schedule == "wsd" and self.warmup_fraction + self.decay_fraction > 1:
            raise ValueError(
                f"learner.warmup_fraction ({self.warmup_fraction}) + learner.decay_fraction "
                f"({self.decay_fraction}) is more than the whole run"
            )
        return self


class DataConfig(StrictConfig):
    train: list[str] = Field(min_length=1)
    """Training data: local .jsonl/.json/.parquet files or hub data set names."""
    split: str = "train"
    """Split to read from hub data sets."""
    max_prompt_tokens: int = Field(default=2048, ge=1)
    """Prompts longer than this (after the chat template) are bad rows."""
    on_bad_row: Literal["stop", "skip"] = "stop"
    """A malformed row (missing field, unknown verifier, empty messages, a prompt that is too
    long) stops the run naming its file and row, or is skipped and counted per reason."""
    prompt_format: Literal["chat", "plain"] = "chat"
    """`chat` applies the tokenizer's chat template; `plain` joins message text (RL-Zero)."""
    shuffle: bool = True
    """Shuffle prompts each epoch (seeded by `run.seed`)."""
    source_verifiers: dict[str, str] = Field(default_factory=dict)
    """Verifier of a source's rows that name none (no `dataset`), by source: the Dolci RL-Zero
    sets are published so, one verifier per set."""


class OfflineDataConfig(StrictConfig):
    """Data of the SFT and DPO trainers: local .jsonl/.json files (or .parquet / hub names)."""

    train: list[str] = Field(min_length=1)
    """Training data sets."""
    eval: list[str] = Field(default_factory=list)
    """Held-out data sets, scored at the start, every train.eval_every steps and at the end."""
    max_tokens: int = Field(default=4096, ge=2)
    """Longest example in tokens (SFT: a conversation; DPO: chosen + rejected); longer is a bad row."""
    on_bad_row: Literal["stop", "skip"] = "stop"
    """A malformed or over-long row stops the run naming its file and row, or is skipped and
    counted per reason in the run log."""
    shuffle: bool = True
    """Shuffle the examples each epoch (seeded by run.seed)."""


class WandbConfig(StrictConfig):
    enabled: bool = False
    """Log metrics to Weights & Biases."""
    project: str = "olmorl"
    """wandb project name."""
    mode: Literal["online", "offline"] = "online"
    """`offline` writes runs locally (no network needed) for a later `wandb sync`."""


class RunConfig(StrictConfig):
    output_dir: str = "runs"
    """Directory under which each run gets its own folder."""
    name: str | None = None
    """Run folder name; default: the recipe's file name and a timestamp."""
    seed: int = 0
    """Seed for data order, sampling and initialisation."""
    steps: int = Field(default=100, ge=1)
    """Training steps; in RL one step is a rollout batch of `algo.num_mini_batches` optimizer steps."""
    checkpoint_every: int = Field(default=0, ge=0)
    """Write a checkpoint (Hugging Face model + training state) every this many steps; 0 writes
    only the final one."""
    keep_checkpoints: int = Field(default=0, ge=0)
    """Checkpoints kept in the run directory (oldest deleted first); 0 keeps all."""
    stage_timeout_s: float = Field(default=3600.0, gt=0)
    """Longest a stage may go without progress (a training step, weight push or checkpoint on
    the learners; a finished group from the engines); past it the run stops, naming the stuck
    actors and, for learners, their stacks."""
    wandb: WandbConfig = WandbConfig()
    """Weights & Biases logging."""
    verbose: bool = False
    """Print every actor's output (vLLM, Ray, the learners) on the console; by default it goes to
    the run's logs/ folder and the console shows progress, olmorl's messages and warnings."""
    check_gpu_memory: bool = True
    """RL on GPUs: before anything starts, measure the GPUs the learners and engines would get
    and stop when the planner's estimate does not fit them (`olmorl plan`); false skips it."""


class TrainerRunConfig(RunConfig):
    """RunConfig for SFT and DPO, whose length is counted in epochs by default."""

    steps: int | None = Field(default=None, ge=1)
    """Optimizer steps; null trains train.epochs full passes over the data."""

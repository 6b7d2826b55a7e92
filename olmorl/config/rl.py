"""The RL (OlmoRL / GRPO) run config: rollout engines, algorithm, verifiers, and the shared parts.

The defaults are Olmo 3's RL settings (../shared/design.md §3): group size 8, clip 0.2 / 0.272,
TIS cap 2.0, no KL, centred advantages without std division, zero-variance groups filtered.
"""

from typing import Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from olmorl.config.base import StrictConfig
from olmorl.config.components import (
    DataConfig,
    LearnerConfig,
    ModelConfig,
    RunConfig,
    custom_ray_resources,
)


class RolloutConfig(StrictConfig):
    num_actors: int = Field(default=1, ge=1)
    """vLLM engines (Ray actors); each holds `tensor_parallel_size` GPUs."""
    tensor_parallel_size: int = Field(default=1, ge=1)
    """Tensor parallelism inside one engine."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Share of accelerator memory for weights and KV cache (on CPU: of the NUMA node; 0.2 works)."""
    max_num_seqs: int = Field(default=256, ge=1)
    """Requests one engine runs concurrently (continuous batching)."""
    max_response_tokens: int = Field(default=1024, ge=1)
    """Generation limit per response; responses that hit it count as truncated."""
    temperature: float = Field(default=1.0, gt=0)
    """Sampling temperature; the learner divides its logits by the same value."""
    top_p: float = 1.0
    """Nucleus sampling: only 1.0 (off) is accepted, see `_full_softmax_only`."""
    top_k: int = -1
    """Top-k sampling: only -1 (off) is accepted, see `_full_softmax_only`."""
    weight_update: Literal["inflight", "drain", "abort"] = "inflight"
    """What running requests do during a weight push: keep their KV cache and continue under
    the new weights (inflight), finish first (drain), or stop and be sampled again (abort)."""
    weight_transfer: Literal["broadcast", "file"] = "broadcast"
    """How pushed weights travel: one collective broadcast per bucket from learner rank 0 to every
    engine (gloo on CPU, NCCL on GPU), or a file per bucket through Ray's object store, which
    rides out an engine dying during a push."""
    cpu_cores: list[int] | None = None
    """CPU machines: cores each engine's processes and vLLM's OpenMP threads are pinned to."""
    ray_resources: dict[str, float] = Field(default_factory=dict)
    """Custom Ray resources each engine asks for besides its CPU and GPUs, e.g.
    `{engine_node: 1}`: only nodes started with `ray start --resources` holding them take an
    engine (see learner.ray_resources)."""

    @field_validator("ray_resources")
    @classmethod
    def _custom_only(cls, value: dict[str, float]) -> dict[str, float]:
        return custom_ray_resources(value)

    enforce_eager: bool = False
    """Disable CUDA graphs / compilation in vLLM (faster start, slower decode)."""
    seeded: bool = False
    """Give each request a seed of its own (samples reproducible per request); on GPU vLLM then
    samples seeded rows one by one, which slows decoding. Off: only the engine's seed applies.
    Ignored on CPU, where vLLM 0.32 crashes on seeded requests with a chunked prefill."""

    @field_validator("top_p", "top_k")
    @classmethod
    def _full_softmax_only(cls, value: float, info: ValidationInfo) -> float:
        # vLLM's processed log-probs under top-p/top-k are renormalised over the kept tokens, while
        # the learner scores the full softmax: every π_old/π_gen ratio would be skewed, silently.
        off = 1.0 if info.field_name == "top_p" else -1
        if value != off:
            raise ValueError(
                f"must be {off} (off): with it on, vLLM's sampling log-probs are renormalised over "
                "the kept tokens while the learner scores the full softmax, which skews every "
                "importance ratio; shape sampling with rollout.temperature instead"
            )
        return value


class AlgorithmConfig(StrictConfig):
    group_size: int = Field(default=8, ge=2)
    """Responses sampled per prompt; advantages are centred within the group."""
    prompts_per_step: int = Field(default=64, ge=1)
    """Non-degenerate groups (unique prompts) in one rollout batch."""
    num_mini_batches: int = Field(default=1, ge=1)
    """Optimizer steps per rollout batch; >1 makes the clip active (7B Instruct: 4)."""
    clip_low: float = Field(default=0.2, ge=0, lt=1)
    """ε_low: ratios below 1 − ε_low stop pushing negative-advantage tokens down."""
    clip_high: float = Field(default=0.272, ge=0)
    """ε_high (clip-higher): ratios above 1 + ε_high stop pushing positive tokens up."""
    tis_cap: float | None = Field(default=2.0, ge=1)
    """Truncated importance sampling cap ρ on π_old/π_gen; null disables TIS."""
    normalize_advantage_std: bool = False
    """Divide advantages by the group std (GRPO); Olmo 3 does not."""
    filter_zero_variance: bool = True
    """Drop groups whose rewards are all equal (they carry no gradient)."""
    async_steps: int = Field(default=1, ge=0)
    """Batches sampled ahead of the learner; a trained token is at most this many steps' policy
    versions old (older groups are dropped). 0 is fully synchronous."""
    active_sampling: bool = True
    """With filter_zero_variance, replace zero-variance groups as they arrive, so every batch
    holds exactly prompts_per_step groups with a gradient."""
    mask_truncated: bool = False
    """Keep responses that hit the length limit out of the loss."""
    truncation_penalty: float = Field(default=0.0, ge=0)
    """Subtracted from the reward of responses that hit the length limit."""
    pass_rate_exclusion: float | None = Field(default=None, gt=0, le=1)
    """Prompts whose group pass rate exceeds this are left out of later epochs; null keeps all."""

    @model_validator(mode="after")
    def _mini_batches_divide_the_batch(self) -> Self:
        if self.prompts_per_step % self.num_mini_batches:
            raise ValueError(
                f"algo.num_mini_batches ({self.num_mini_batches}) must divide "
                f"algo.prompts_per_step ({self.prompts_per_step}) so every mini-batch holds "
                "whole groups"
            )
        return self


class VerifierLimitsConfig(StrictConfig):
    concurrency: int = Field(default=64, ge=1)
    """Calls of the verifier in flight at once, per reward worker."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Limit on one call; past it the response scores 0 with reason `timeout`."""
    retries: int = Field(default=0, ge=0)
    """Further attempts after a call raises; after them it scores 0 with reason `error:<Type>`."""
    max_consecutive_failures: int | None = Field(default=256, ge=1)
    """Failed calls in a row (timeouts, errors, an unreachable judge) that stop the run with a
    message; fewer only score 0 and are counted. null: never stop."""


class JudgeServerConfig(StrictConfig):
    model: str
    """Judge checkpoint (local path or hub name) that vLLM serves for the `judge` verifier."""
    num_gpus: int = Field(default=1, ge=0)
    """GPUs of the server's Ray actor (its tensor parallelism); 0 on CPU-only machines."""
    dtype: str = "auto"
    """Weights dtype of the judge."""
    max_model_len: int | None = Field(default=None, ge=1)
    """Context of the judge (prompt + reply); null takes the model's."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    """As rollout.gpu_memory_utilization; null: vLLM's default on GPU, 0.2 on CPU."""
    extra_args: list[str] = Field(default_factory=list)
    """Further `vllm` server flags, e.g. [--tensor-parallel-size, "2"]."""


class VerifiersConfig(StrictConfig):
    weights: dict[str, float] = Field(default_factory=dict)
    """Per-verifier reward weights (default 1.0); a row listing several verifiers sums them."""
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-verifier options, e.g. `{math: {timeout_s: 5}}`, checked by each verifier."""
    num_workers: int = Field(default=4, ge=1)
    """Reward actors scoring in parallel, so slow verifiers do not stall generation."""
    default_limits: VerifierLimitsConfig = VerifierLimitsConfig()
    """Concurrency, timeout and retries of every verifier not named in `limits`."""
    limits: dict[str, VerifierLimitsConfig] = Field(default_factory=dict)
    """Per-verifier limits, e.g. `{judge: {concurrency: 16, timeout_s: 300, retries: 2}}`."""
    judge_server: JudgeServerConfig | None = None
    """A vLLM server the run starts for the `judge` verifier, which then needs no `url` option."""
    cache_size: int = Field(default=65536, ge=0)
    """Results kept per reward worker, keyed by (verifier, response, label, prompt)."""


class EvalConfig(StrictConfig):
    data: list[str] = Field(default_factory=list)
    """Held-out prompt data sets (the training row schema), sampled by the run's engines at step
    0, every `every` steps and at the end; never trained on. Empty: no evaluation."""
    every: int = Field(default=0, ge=0)
    """Steps between evaluations; 0 evaluates only at the start and the end."""
    samples_per_prompt: int = Field(default=1, ge=1)
    """Responses per held-out prompt; pass@k is logged for k = this."""
    temperature: float = Field(default=0.0, ge=0)
    """Sampling temperature of the evaluation; 0 is greedy."""
    max_prompts: int | None = Field(default=None, ge=1)
    """Evaluate on the first this many held-out prompts; null takes them all."""

    @model_validator(mode="after")
    def _greedy_samples_differ(self) -> Self:
        if self.temperature == 0 and self.samples_per_prompt > 1:
            raise ValueError(
                "eval.samples_per_prompt > 1 needs eval.temperature > 0: greedy samples of one "
                "prompt are all the same response"
            )
        return self


class RLConfig(StrictConfig):
    model: ModelConfig
    """Policy checkpoint."""
    data: DataConfig
    """Prompt data sets."""
    rollout: RolloutConfig = RolloutConfig()
    """vLLM rollout engines."""
    learner: LearnerConfig = LearnerConfig()
    """Learner workers and optimizer."""
    algo: AlgorithmConfig = AlgorithmConfig()
    """The OlmoRL objective."""
    verifiers: VerifiersConfig = VerifiersConfig()
    """Reward service."""
    eval: EvalConfig = EvalConfig()
    """Held-out evaluation during the run."""
    run: RunConfig = RunConfig()
    """Outputs, seed, length of the run."""

    @property
    def num_actors(self) -> int:
        """Rollout engines and learner ranks: the Ray actors that each take a CPU."""
        return self.rollout.num_actors + self.learner.num_workers

    @model_validator(mode="after")
    def _fits_the_context(self) -> Self:
        limit = self.model.max_position_embeddings
        needed = self.data.max_prompt_tokens + self.rollout.max_response_tokens
        if limit is not None and needed > limit:
            raise ValueError(
                f"data.max_prompt_tokens + rollout.max_response_tokens = {needed} exceeds "
                f"model.max_position_embeddings ({limit})"
            )
        judge_url = self.verifiers.options.get("judge", {}).get("url")
        if self.verifiers.judge_server is not None and judge_url:
            raise ValueError(
                "verifiers.judge_server starts a judge and verifiers.options.judge.url names "
                "another; set one of them"
            )
        if needed > self.learner.micro_batch_tokens:
            raise ValueError(
                f"learner.micro_batch_tokens ({self.learner.micro_batch_tokens}) must hold one "
                f"whole prompt + response ({needed} tokens)"
            )
        return self

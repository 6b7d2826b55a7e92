"""A vLLM AsyncLLM engine that samples groups and takes new weights while it runs.

A plain class with async methods; `ray.remote(RolloutEngine)` makes it an async Ray actor. Each
`generate` call is one request of n samples; many calls in flight keep the engine full through
vLLM's continuous batching, so a finished request frees its slots for the next at once.
"""

import gc
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from olmorl.actor_logs import capture_output
from olmorl.config import ModelConfig, RolloutConfig
from olmorl.cpu import pin_to_cores
from olmorl.rl.types import Completion
from olmorl.rollout.activity import EngineActivity

_EXTENSION = "olmorl.rollout.vllm_transfer.WeightTransferExtension"
_PAUSE_MODES = {"inflight": "keep", "drain": "wait", "abort": "abort"}


def sampling_params(rollout: RolloutConfig, n: int, seed: int | None, **extra):
    """The sampling settings of one group: n responses with the logprob of each sampled token."""
    from vllm import SamplingParams
    from vllm.platforms import current_platform

    extra.setdefault("max_tokens", rollout.max_response_tokens)
    extra.setdefault("temperature", rollout.temperature)
    seed = request_seed(rollout.seeded, seed, on_cpu=current_platform.is_cpu())
    return SamplingParams(n=n, logprobs=0, seed=seed, **extra)


def request_seed(seeded: bool, seed: int | None, on_cpu: bool) -> int | None:
    """The seed one request carries: `seed` only with `rollout.seeded`, else None (the engine's
    seed then drives sampling). A seeded request sends vLLM's GPU sampler down a per-row path
    (a generator per request), slower than the batched one, hence off by default."""
    if on_cpu:
        # vLLM 0.32 on CPU crashes the engine ("CPU Generator does not use offset") when a
        # request with its own seed has a chunked prefill; CPU runs rely on the engine's seed.
        return None
    return seed if seeded else None


class RolloutEngine:
    def __init__(self, model: ModelConfig, rollout: RolloutConfig, max_model_len: int, seed: int):
        capture_output()
        self.model_cfg, self.rollout = model, rollout
        self.max_model_len, self.seed = max_model_len, seed
        self.version = 0
        self.llm = None
        self.activity = EngineActivity(rollout.max_num_seqs)
        self._cache_epoch = 0  # bumped by every weight update; salts the prefix cache
        self._weight_group = ""

    async def start(self) -> None:
        from vllm.distributed.weight_transfer.base import WeightTransferInitRequest
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from olmorl.rollout.vllm_transfer import BACKEND_NAME

        if self.rollout.cpu_cores:
            pin_to_cores(self.rollout.cpu_cores)
            # vLLM's CPU worker binds its OpenMP threads itself; "auto" would take every core.
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, self.rollout.cpu_cores))

        args = AsyncEngineArgs(
            model=self.model_cfg.path,
            dtype=self.model_cfg.dtype,
            max_model_len=self.max_model_len,
            max_num_seqs=self.rollout.max_num_seqs,
            tensor_parallel_size=self.rollout.tensor_parallel_size,
            # This actor holds the engine's GPUs itself (in its placement-group bundle on GPU
            # clusters); vLLM, finding itself in a placement group, would otherwise pick its Ray
            # executor and try to place its workers in the run's bundles.
            distributed_executor_backend="mp" if self.rollout.tensor_parallel_size > 1 else None,
            gpu_memory_utilization=self.rollout.gpu_memory_utilization,
            enforce_eager=self.rollout.enforce_eager,
            seed=self.seed,
            # Logprobs of the temperature-scaled distribution the tokens were drawn from, which
            # is what the learner computes (design §1); raw ones are off by the temperature.
            logprobs_mode="processed_logprobs",
            worker_extension_cls=_EXTENSION,
            weight_transfer_config={"backend": BACKEND_NAME},
            disable_log_stats=True,
        )
        self.llm = AsyncLLM.from_engine_args(args)
        await self.llm.init_weight_transfer_engine(WeightTransferInitRequest(init_info={}))

    async def generate(
        self,
        prompt_ids: list[int],
        n: int,
        seed: int | None = None,
        fixed_length: int | None = None,
        temperature: float | None = None,
    ) -> list[Completion]:
        """Samples n responses to one prompt, with the logprob and policy version of every token.

        A weight update may land while the request runs (`inflight`): its tokens then carry
        different versions, as vLLM labels them. A request aborted by an `abort` update comes back
        with finish_reason "abort" and whatever it had generated. `fixed_length` makes every
        response exactly that long (end-of-text ignored), for benchmarks. `temperature` replaces
        rollout.temperature (held-out evaluation; 0 is greedy).
        """
        from vllm.sampling_params import RequestOutputKind

        overrides = {} if fixed_length is None else {"max_tokens": fixed_length, "ignore_eos": True}
        if temperature is not None:
            overrides["temperature"] = temperature
        params = sampling_params(
            self.rollout, n, seed, output_kind=RequestOutputKind.DELTA, **overrides
        )
        samples = [_Sample() for _ in range(n)]
        # No token of this request can come from weights older than those held now: the version
        # every token vLLM leaves unlabelled gets, so that staleness is never understated.
        oldest_possible = self.version
        self.activity.started(n)
        try:
            # The salt keeps prefix-cache blocks computed by older weights out of this request.
            prompt = {"prompt_token_ids": prompt_ids, "cache_salt": f"weights-{self._cache_epoch}"}
            async for output in self.llm.generate(prompt, params, request_id=uuid.uuid4().hex):
                for c in output.outputs:
                    sample = samples[c.index]
                    sample.token_ids += c.token_ids
                    sample.logprobs += [s[t].logprob for t, s in zip(c.token_ids, c.logprobs)]
                    if c.finish_reason is not None and sample.finish_reason is None:
                        sample.finish_reason = c.finish_reason
                        sample.versions = token_versions(
                            c.weight_versions, len(sample.token_ids), oldest_possible
                        )
                        self.activity.finished(1, len(sample.token_ids))
        finally:
            unfinished = [s for s in samples if s.finish_reason is None]
            self.activity.finished(len(unfinished), sum(len(s.token_ids) for s in unfinished))
        return [
            Completion(
                token_ids=tuple(s.token_ids),
                logprobs=tuple(s.logprobs),
                finish_reason=s.finish_reason or "abort",
                token_versions=s.versions or (oldest_possible,) * len(s.token_ids),
            )
            for s in samples
        ]

    async def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        """log p(token_t | tokens_<t) of a fixed sequence at temperature 1 (position 0 gets 0)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        final = None
        async for output in self.llm.generate(
            {"prompt_token_ids": token_ids}, params, request_id=uuid.uuid4().hex
        ):
            final = output
        return [0.0] + [
            step[token].logprob for token, step in zip(token_ids[1:], final.prompt_logprobs[1:])
        ]

    async def begin_weight_update(self, mode: str = "inflight") -> None:
        """Stops scheduling for a weight update; `mode` says what running requests do meanwhile:
        inflight: frozen with their KV cache, resumed under the new weights; drain: finish first;
        abort: cut off (their callers get finish_reason "abort")."""
        self.activity.paused(True)
        # Requests submitted from now on are salted apart from every cached prefix (they run on
        # the new weights); the KV cache itself must survive for the frozen in-flight requests.
        self._cache_epoch += 1
        await self.llm.pause_generation(mode=_PAUSE_MODES[mode], clear_cache=mode != "inflight")
        await self.llm.start_weight_update()

    async def join_weight_group(self, group: dict) -> None:
        """Joins learner rank 0's weight-broadcast group (a `TransferGroupInfo` as a dict); returns
        once every member has joined."""
        from vllm.distributed.weight_transfer.base import WeightTransferInitRequest

        self._weight_group = ""  # in no group until every worker has joined the new one
        await self.llm.init_weight_transfer_engine(
            WeightTransferInitRequest(init_info={"group": group})
        )
        self._weight_group = group["name"]

    async def receive_broadcast(self, layout: dict, group: str) -> None:
        """Receives one bucket (its `BucketLayout` as a dict) from the root of group `group` and
        loads it."""
        await self._update({"layout": layout, "group": group})

    async def receive_weights(self, safetensors_bytes: bytes) -> None:
        """Loads one bucket of full tensors (safetensors-serialised, Hugging Face names)."""
        shm = Path("/dev/shm")
        fd, path = tempfile.mkstemp(dir=shm if shm.is_dir() else None, suffix=".safetensors")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(safetensors_bytes)
            await self._update({"path": path})
        finally:
            os.unlink(path)

    async def _update(self, update_info: dict) -> None:
        from vllm.distributed.weight_transfer.base import WeightTransferUpdateRequest

        await self.llm.update_weights(WeightTransferUpdateRequest(update_info=update_info))

    def weight_group(self) -> str:
        """The name of the weight-broadcast group this engine is in ("" for none); answers at once."""
        return self._weight_group

    async def finish_weight_update(self, version: int) -> None:
        await self.llm.finish_weight_update(weight_version=str(version))
        self.version = version
        await self.llm.resume_generation()
        self.activity.paused(False)

    def where(self) -> dict[str, str]:
        """This engine's Ray node id and IP."""
        from olmorl.node_ip import this_node

        return this_node()

    def take_activity(self) -> dict[str, float]:
        """Busy time, occupancy, pause time and tokens since the last call (`EngineActivity`)."""
        return self.activity.take()

    async def shutdown(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
            # Collect it now: AsyncLLM.__del__ at interpreter teardown fails noisily.
            self.llm = None
            gc.collect()


@dataclass
class _Sample:
    """One of a request's n responses, as its tokens stream in."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    versions: tuple[int, ...] | None = None


def token_versions(spans, num_tokens: int, oldest_possible: int) -> tuple[int, ...]:
    """Per-token policy versions from vLLM's spans. A token vLLM did not label with a version
    number (no spans, spans that do not cover the response, or vLLM's own "default" label from
    before any weight push) gets `oldest_possible`, the version the engine held when the request
    was submitted."""
    versions = tuple(
        int(span.version) if span.version.isdigit() else oldest_possible
        for span in spans or ()
        for _ in range(span.start, span.end)
    )
    return versions if len(versions) == num_tokens else (oldest_possible,) * num_tokens

"""A vLLM AsyncLLM engine that samples groups and takes new weights while it runs.

A plain class with async methods; `ray.remote(RolloutEngine)` makes it an async Ray actor. Each
`generate` call is one request of n samples; many calls in flight keep the engine full through
vLLM's continuous batching, so a finished request frees its slots for the next at once.
"""

import gc
import os
import tempfile
import uuid
from pathlib import Path

from olmorl.config import ModelConfig, RolloutConfig
from olmorl.rl.types import Completion

_EXTENSION = "olmorl.rollout.cpu_weight_transfer.WeightTransferExtension"


def sampling_params(rollout: RolloutConfig, n: int, seed: int | None, **extra):
    """The sampling settings of one group: n responses with the logprob of each sampled token."""
    from vllm import SamplingParams
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        # vLLM 0.32 on CPU crashes the engine ("CPU Generator does not use offset") when a
        # request with its own seed has a chunked prefill; CPU runs rely on the engine's seed.
        seed = None

    return SamplingParams(
        n=n,
        max_tokens=rollout.max_response_tokens,
        temperature=rollout.temperature,
        top_p=rollout.top_p,
        logprobs=0,
        seed=seed,
        **extra,
    )


class RolloutEngine:
    def __init__(self, model: ModelConfig, rollout: RolloutConfig, max_model_len: int, seed: int):
        self.model_cfg, self.rollout = model, rollout
        self.max_model_len, self.seed = max_model_len, seed
        self.version = 0
        self.llm = None

    async def start(self) -> None:
        from vllm.distributed.weight_transfer.base import WeightTransferInitRequest
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from olmorl.rollout.cpu_weight_transfer import BACKEND_NAME

        args = AsyncEngineArgs(
            model=self.model_cfg.path,
            dtype=self.model_cfg.dtype,
            max_model_len=self.max_model_len,
            max_num_seqs=self.rollout.max_num_seqs,
            tensor_parallel_size=self.rollout.tensor_parallel_size,
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
        self, prompt_ids: list[int], n: int, seed: int | None = None
    ) -> list[Completion]:
        """Samples n responses to one prompt, with the logprob of every sampled token."""
        from vllm.sampling_params import RequestOutputKind

        params = sampling_params(self.rollout, n, seed, output_kind=RequestOutputKind.FINAL_ONLY)
        final = None
        async for output in self.llm.generate(
            {"prompt_token_ids": prompt_ids}, params, request_id=uuid.uuid4().hex
        ):
            final = output
        return [
            Completion(
                token_ids=tuple(c.token_ids),
                logprobs=tuple(step[token].logprob for token, step in zip(c.token_ids, c.logprobs)),
                finish_reason=c.finish_reason,
                policy_version=self.version,
            )
            for c in final.outputs
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

    async def begin_weight_update(self) -> None:
        # "keep" freezes running requests and their KV cache; they resume under the new weights.
        await self.llm.pause_generation(mode="keep", clear_cache=False)
        await self.llm.start_weight_update()

    async def receive_weights(self, safetensors_bytes: bytes) -> None:
        """Loads one bucket of full tensors (safetensors-serialised, Hugging Face names)."""
        from vllm.distributed.weight_transfer.base import WeightTransferUpdateRequest

        shm = Path("/dev/shm")
        fd, path = tempfile.mkstemp(dir=shm if shm.is_dir() else None, suffix=".safetensors")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(safetensors_bytes)
            await self.llm.update_weights(WeightTransferUpdateRequest(update_info={"path": path}))
        finally:
            os.unlink(path)

    async def finish_weight_update(self, version: int) -> None:
        await self.llm.finish_weight_update(weight_version=str(version))
        self.version = version
        await self.llm.resume_generation()

    async def shutdown(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
            # Collect it now: AsyncLLM.__del__ at interpreter teardown fails noisily.
            self.llm = None
            gc.collect()

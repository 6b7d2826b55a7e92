"""`olmorl bench rollout`: generation tokens/s of the RL loop's rollout actors vs vLLM alone.

Both sides get the same model, prompts, group size, sampling settings and per-prompt seeds (sent
to vLLM only with `rollout.seeded`); they run one after the other in the same process tree, so
the ratio compares like with like. vLLM alone is the offline `LLM` given every prompt at once, the
best case for its own scheduler.
"""

import time

from olmorl.bench.table import BenchResult
from olmorl.config import RLConfig


def bench_rollout(cfg: RLConfig, num_prompts: int) -> list[BenchResult]:
    from transformers import AutoTokenizer

    from olmorl.data.prompts import load_prompts

    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    _, ids, _ = load_prompts(cfg.data, tokenizer)
    prompts = [ids[i % len(ids)] for i in range(num_prompts)]
    seeds = list(range(len(prompts)))
    return [_vllm_alone(cfg, prompts, seeds), _rollout_actors(cfg, prompts, seeds)]


def _vllm_alone(cfg: RLConfig, prompts: list[list[int]], seeds: list[int]) -> BenchResult:
    import gc

    from vllm import LLM

    from olmorl.rollout.engine import sampling_params

    llm = LLM(
        model=cfg.model.path,
        dtype=cfg.model.dtype,
        max_model_len=cfg.data.max_prompt_tokens + cfg.rollout.max_response_tokens,
        max_num_seqs=cfg.rollout.max_num_seqs,
        gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
        enforce_eager=cfg.rollout.enforce_eager,
        seed=cfg.run.seed,
        logprobs_mode="processed_logprobs",
    )
    params = [sampling_params(cfg.rollout, cfg.algo.group_size, seed) for seed in seeds]
    start = time.perf_counter()
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return BenchResult("vllm", tokens, seconds)


def _rollout_actors(cfg: RLConfig, prompts: list[list[int]], seeds: list[int]) -> BenchResult:
    import ray

    from olmorl.ray_init import init_ray
    from olmorl.rollout.engine import RolloutEngine

    started = init_ray(cfg.num_actors)
    max_model_len = cfg.data.max_prompt_tokens + cfg.rollout.max_response_tokens
    actors = [
        ray.remote(RolloutEngine)
        .options(num_cpus=1)
        .remote(cfg.model, cfg.rollout, max_model_len, cfg.run.seed + i)
        for i in range(cfg.rollout.num_actors)
    ]
    try:
        ray.get([a.start.remote() for a in actors])
        start = time.perf_counter()
        groups = ray.get(
            [
                actors[i % len(actors)].generate.remote(p, cfg.algo.group_size, seed)
                for i, (p, seed) in enumerate(zip(prompts, seeds))
            ]
        )
        seconds = time.perf_counter() - start
    finally:
        ray.get([a.shutdown.remote() for a in actors])
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
    return BenchResult("olmorl", sum(len(c.token_ids) for g in groups for c in g), seconds)

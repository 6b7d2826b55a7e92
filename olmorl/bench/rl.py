"""`olmorl bench rl`: end-to-end training tokens/s of the RL loop in its scheduling modes.

One cluster (engines, learners, reward workers) runs every mode in turn on the same model and
prompts, each for a warm-up step and then `steps` measured steps:

  sync            async_steps=0: generation waits for training and training for generation
  async           async_steps=a (default 1), no active sampling, weight pushes drain running
                  requests first
  async+active    as async, with zero-variance groups replaced as they arrive
  async+inflight  as async+active, with weight pushes landing in flight (KV cache kept)

Response lengths are drawn per prompt from a Pareto distribution (a long tail, as reasoning
traces have) and enforced with ignore_eos, and the reward is the `coin` verifier, so the
figures depend on scheduling alone, not on what the random model writes.
"""

import random
import time
from collections import Counter
from dataclasses import dataclass

from olmorl.config import RLConfig

MODES = {
    "sync": {"asynchronous": False, "active_sampling": False, "weight_update": "drain"},
    "async": {"asynchronous": True, "active_sampling": False, "weight_update": "drain"},
    "async+active": {"asynchronous": True, "active_sampling": True, "weight_update": "drain"},
    "async+inflight": {"asynchronous": True, "active_sampling": True, "weight_update": "inflight"},
}


@dataclass(frozen=True)
class ModeResult:
    mode: str
    tokens: int
    """Response tokens of the trained batches."""
    seconds: float
    learner_idle: float
    """Share of the learner's wall time spent waiting for a batch."""
    engine_busy: float
    """Share of the engines' wall time with sequences to run (not paused)."""
    occupancy: float
    """Mean share of the engines' sequence slots in use."""
    paused: float
    """Share of the engines' wall time paused for weight pushes."""
    resampled: int
    """Zero-variance groups generated and thrown away by active sampling."""
    stale: int
    """Groups generated and dropped for being too stale to train on."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def long_tail_lengths(
    count: int, shortest: int, longest: int, alpha: float, seed: int
) -> list[int]:
    """Pareto(alpha) lengths from `shortest`, cut at `longest`: most short, a few very long."""
    rng = random.Random(seed)
    return [
        min(longest, int(shortest * (1.0 - rng.random()) ** (-1.0 / alpha))) for _ in range(count)
    ]


def bench_rl(
    cfg: RLConfig, modes: list[str], steps: int, shortest: int, alpha: float, async_steps: int = 1
) -> list[ModeResult]:
    import ray
    from transformers import AutoTokenizer

    from olmorl.data.prompts import load_prompts
    from olmorl.ray_init import init_ray
    from olmorl.rl.cluster import RLCluster
    from olmorl.rl.types import Prompt

    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r}; modes: {', '.join(MODES)}")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    rows, ids, _ = load_prompts(cfg.data, tokenizer)
    # The coin's label makes each prompt's coin its own.
    prompts = [
        Prompt(p, {"messages": list(r.messages), "dataset": "coin", "ground_truth": str(i)})
        for i, (p, r) in enumerate(zip(ids, rows))
    ]
    lengths = long_tail_lengths(
        len(prompts), shortest, cfg.rollout.max_response_tokens, alpha, cfg.run.seed
    )
    started = init_ray(cfg.num_actors)
    cluster = RLCluster(cfg, ["coin"])
    try:
        cluster.push_weights()
        return [
            _run_mode(cluster, cfg, mode, steps, prompts, lengths, tokenizer, async_steps)
            for mode in modes
        ]
    finally:
        cluster.shutdown()
        if started:
            ray.shutdown()


def _run_mode(cluster, cfg, mode, steps, prompts, lengths, tokenizer, async_steps) -> ModeResult:
    from olmorl.rl.batch import build_step_batch
    from olmorl.rl.prompts import PromptSampler

    settings = MODES[mode]
    algo = cfg.algo.model_copy(
        update={
            "async_steps": async_steps if settings["asynchronous"] else 0,
            "active_sampling": settings["active_sampling"],
        }
    )
    producer = cluster.producer(
        prompts, PromptSampler(len(prompts), cfg.run.seed), tokenizer, algo, lengths
    )
    producer.start()
    tokens, waited, counts = 0, 0.0, Counter()
    try:
        for step in range(1, steps + 2):
            if step == 2:  # step 1 warms up; measure from here
                cluster.engine_stats()
                start, tokens, waited, counts = time.perf_counter(), 0, 0.0, Counter()
            t0 = time.perf_counter()
            taken = producer.take(learner_version=cluster.version)
            waited += time.perf_counter() - t0
            counts.update(
                resampled=int(taken.stats["groups_resampled"]),
                stale=int(taken.stats["groups_dropped_stale"]),
            )
            batch = build_step_batch(
                taken.groups, algo, cfg.learner.num_workers, cfg.learner.micro_batch_tokens
            )
            if batch.per_rank[0]:
                cluster.train(batch)
            cluster.push_weights(settings["weight_update"])
            producer.step_done(step)
            tokens += sum(len(c.token_ids) for g in taken.groups for c in g.group.completions)
        seconds = time.perf_counter() - start
        engines = cluster.engine_stats()
    finally:
        producer.stop(drain=True)  # the next mode starts with idle engines
    return ModeResult(
        mode=mode,
        tokens=tokens,
        seconds=seconds,
        learner_idle=waited / seconds,
        engine_busy=engines["engine/busy_fraction"],
        occupancy=engines["engine/occupancy_fraction"],
        paused=engines["engine/paused_fraction"],
        resampled=counts["resampled"],
        stale=counts["stale"],
    )


def format_modes(results: list[ModeResult]) -> str:
    """The modes side by side; `ratio` is each mode's training tokens/s over the first's."""
    base = results[0].tokens_per_s
    header = (
        f"{'mode':<15} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} {'ratio':>6} "
        f"{'learner idle':>12} {'engine busy':>11} {'occupancy':>9} {'paused':>7} "
        f"{'resampled':>9} {'stale':>6}"
    )
    lines = [header]
    for r in results:
        lines.append(
            f"{r.mode:<15} {r.tokens:>8} {r.seconds:>8.1f} {r.tokens_per_s:>9.1f} "
            f"{r.tokens_per_s / base:>6.2f} {r.learner_idle:>12.0%} {r.engine_busy:>11.0%} "
            f"{r.occupancy:>9.0%} {r.paused:>7.0%} {r.resampled:>9} {r.stale:>6}"
        )
    return "\n".join(lines)

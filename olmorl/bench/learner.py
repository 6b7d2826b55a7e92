"""`olmorl bench learner`: the learner's RL train step against a plain single-process loop.

Both sides train on the same packed rows of one fixed batch (the recipe's prompts, group_size
responses each of random tokens and lengths up to rollout.max_response_tokens, half of them
rewarded), with the same model, dtype, loss and AdamW. The learner side is the RL loop's own
`LearnerGroup.each("train_step")` on Ray actors with the recipe's strategy; the plain side is a
forward, backward and optimizer step per row in this process with as many threads as one learner
rank has (`learner.cpu_cores` pins them; else one). The unit is trained tokens (loss tokens).
"""

import random
import time

from olmorl.bench.table import BenchResult
from olmorl.config import RLConfig


def bench_learner(cfg: RLConfig, steps: int) -> list[BenchResult]:
    """The plain loop (baseline) and the learners, each over `steps` timed steps after one
    warm-up step."""
    from transformers import AutoTokenizer

    from olmorl.rl.batch import build_step_batch
    from olmorl.rl.loop import load_rl_prompts

    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    _, prompts, _ = load_rl_prompts(cfg.data, tokenizer)
    groups = synthetic_groups(
        [p.token_ids for p in prompts[: cfg.algo.prompts_per_step]],
        cfg.algo.group_size,
        cfg.rollout.max_response_tokens,
        len(tokenizer),
    )
    world = cfg.learner.num_workers
    batch = build_step_batch(groups, cfg.algo, world, cfg.learner.micro_batch_tokens)
    tokens = int(batch.stats["loss_tokens"])
    plain = _time_plain_loop(cfg, batch.per_rank[0] if world == 1 else _all_rows(batch), steps)
    learners = _time_learners(cfg, batch, steps)
    return [
        BenchResult("plain loop (1 process)", tokens * steps, plain),
        BenchResult(f"olmorl learners ({world} rank{'s' * (world > 1)})", tokens * steps, learners),
    ]


def synthetic_groups(prompt_ids, group_size: int, max_tokens: int, vocab: int, seed: int = 0):
    """Scored groups of random responses, alternately rewarded 1 and 0 (none is zero-variance)."""
    from olmorl.rl.types import Completion, PromptGroup, ScoredGroup

    rng = random.Random(seed)
    groups = []
    for index, ids in enumerate(prompt_ids):
        completions = []
        for _ in range(group_size):
            length = rng.randint(1, max_tokens)
            tokens = tuple(rng.randrange(vocab) for _ in range(length))
            completions.append(Completion(tokens, (-1.0,) * length, "stop", (0,) * length))
        rewards = tuple(float(j % 2) for j in range(group_size))
        groups.append(ScoredGroup(PromptGroup(index, tuple(ids), tuple(completions)), rewards, {}))
    return groups


def _all_rows(batch):
    """One rank's view of every rank's rows: the plain loop does the whole step's work."""
    from olmorl.learner.batch import MiniBatch

    return [
        MiniBatch(
            rows=[row for rank in batch.per_rank for row in rank[index].rows],
            total_loss_tokens=batch.per_rank[0][index].total_loss_tokens,
        )
        for index in range(len(batch.per_rank[0]))
    ]


def _time_plain_loop(cfg: RLConfig, mini_batches, steps: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from olmorl.algo import olmorl_policy_loss, token_logprobs
    from olmorl.learner.attention import DENSE_MASK_KERNELS

    # A learner rank's threads: one per pinned core, else Ray's OMP_NUM_THREADS for an actor of
    # one CPU, which is 1.
    threads = len(cfg.learner.cpu_cores) if cfg.learner.cpu_cores else 1
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            cfg.model.path, dtype=getattr(torch, cfg.model.dtype)
        )
        model.config.use_cache = False
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learner.lr, weight_decay=0.0)

        # The rows' layout the learners use for this kernel, so that both sides do the same work.
        pad = model.config._attn_implementation in DENSE_MASK_KERNELS

        def step() -> None:
            for mb in mini_batches:
                for row in mb.rows:
                    inputs = row.model_inputs(pad=pad)
                    logits = model(**inputs).logits  # [1, T, V] or [D, L, V]
                    logprobs = row.in_row_order(
                        token_logprobs(logits, inputs["input_ids"], cfg.rollout.temperature)
                    )  # [1, T]
                    loss, _ = olmorl_policy_loss(
                        logprobs,
                        logprobs.detach(),
                        row.sampler_logprobs.unsqueeze(0),
                        row.advantages.unsqueeze(0),
                        row.loss_mask.unsqueeze(0),
                        mb.total_loss_tokens,
                        tis_cap=cfg.algo.tis_cap,
                    )
                    loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.learner.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        step()  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)


def _time_learners(cfg: RLConfig, batch, steps: int) -> float:
    import ray

    from olmorl.ray_init import init_ray
    from olmorl.train.learners import LearnerGroup

    started = init_ray(cfg.learner.num_workers)
    group = LearnerGroup(
        cfg.model,
        cfg.learner,
        cfg.run.seed,
        steps + 1,
        cfg.algo,
        cfg.rollout.temperature,
        cfg.run.stage_timeout_s,
    )
    try:
        group.wait("setup", group.start())
        per_rank = [(mbs,) for mbs in batch.per_rank]
        group.each("train_step", per_rank)  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            group.each("train_step", per_rank)
        return time.perf_counter() - start
    finally:
        group.shutdown()
        if started:
            ray.shutdown()

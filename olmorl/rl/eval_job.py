"""`olmorl eval`: the held-out evaluation of an RL run, on any checkpoint, outside a run.

The same engines, reward workers and metrics as the run's own evaluation (cluster.evaluate_on),
without learners: the figures of a run's last evaluation and of this one on its last checkpoint
agree.
"""

import ray

from olmorl.config import RLConfig


def evaluate_checkpoint(cfg: RLConfig) -> dict[str, float]:
    """`eval/...` metrics of `cfg.model.path` on `cfg.eval.data`, sampled as `cfg.eval` says."""
    from transformers import AutoTokenizer

    from olmorl.placement import eval_needs
    from olmorl.ray_init import cluster_uses_gpus, init_ray, reserve, wait_started
    from olmorl.rl.cluster import evaluate_on, new_engine, new_reward_workers, wait_quietly
    from olmorl.rl.loop import load_rl_prompts

    if cfg.verifiers.judge_server is not None:
        raise EvalSetupError(
            "olmorl eval starts no judge server: set verifiers.judge_server=null and "
            "verifiers.options.judge.url to a running judge"
        )
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    rows, prompts, _ = load_rl_prompts(
        cfg.data.model_copy(update={"train": cfg.eval.data}), tokenizer
    )
    prompts = prompts[: cfg.eval.max_prompts]
    names = sorted({name for r in rows for name in r.verifier_names})
    started_ray = init_ray(cfg.rollout.num_actors)
    engines, workers, placement = [], [], None
    try:
        placement = reserve(eval_needs(cfg, cluster_uses_gpus()), cfg.run.stage_timeout_s)
        engines = [new_engine(cfg, i, placement) for i in range(cfg.rollout.num_actors)]
        started = {f"rollout engine {i}": e.start.remote() for i, e in enumerate(engines)}
        wait_started(started, cfg.run.stage_timeout_s)
        workers = new_reward_workers(cfg.verifiers, names)
        return evaluate_on(engines, workers, cfg, prompts, tokenizer)
    finally:
        wait_quietly([a.shutdown.remote() for a in engines + workers])
        for actor in engines + workers:
            ray.kill(actor)
        if placement is not None:
            placement.release()
        if started_ray:
            ray.shutdown()


class EvalSetupError(ValueError):
    """A config `olmorl eval` cannot run."""

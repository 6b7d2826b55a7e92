"""`olmorl rl`: the OlmoRL loop, one named step after another.

The rollout producer keeps the engines generating and the reward workers scoring, up to
`algo.async_steps` batches ahead. Each step: take a full batch from it → advantages and
zero-variance filtering → one optimizer step per mini-batch on the learners → push the new weights
to every engine (in flight, by default). Outputs go to the run directory: metrics.jsonl,
data_log.jsonl, checkpoints/ (resumable: the producer's data position rides along), reward.png.
"""

import json
import time
from pathlib import Path

from olmorl.config import RLConfig, write_resolved_config
from olmorl.config.components import DataConfig
from olmorl.data.rl_rows import RLRow
from olmorl.rl.types import Prompt
from olmorl.train.loop import RunResult

"""One line per step: the prompts (indices into the concatenated data sets) it trained on."""


def run_rl(cfg: RLConfig, run_dir: Path, resume: bool = False) -> RunResult:
    """Runs (or with `resume`, continues from its newest intact checkpoint) an RL job."""
    import ray
    from ray.exceptions import RayActorError
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from olmorl.actor_logs import actor_log_dir
    from olmorl.io import atomic_write_text
    from olmorl.metrics_log import (
        DATA_LOG_NAME,
        METRICS_NAME,
        MetricsLog,
        drop_steps_after,
        plot_metrics,
    )
    from olmorl.placement import rl_needs
    from olmorl.ray_init import ActorStartTimeout, init_ray
    from olmorl.rl.cluster import EngineLost, RLCluster
    from olmorl.rl.producer import RolloutStalled
    from olmorl.rl.prompts import PromptSampler
    from olmorl.run_errors import stopped
    from olmorl.train.checkpoints import latest_checkpoint, write_checkpoint
    from olmorl.train.learners import LearnerFailed, LearnerStalled
    from olmorl.train.loop import skipped_rows
    from verifiers.service import VerifierDown

    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    rows, prompts, report = load_rl_prompts(cfg.data, tokenizer)
    eval_rows, eval_prompts, eval_report = (
        load_rl_prompts(cfg.data.model_copy(update={"train": cfg.eval.data}), tokenizer)
        if cfg.eval.data
        else ([], [], {})
    )
    eval_prompts = eval_prompts[: cfg.eval.max_prompts]
    verifier_names = sorted({name for r in rows + eval_rows for name in r.verifier_names})
    check_verifier_hosts(verifier_names)
    sampler = PromptSampler(len(rows), cfg.run.seed, cfg.data.shuffle)

    found = latest_checkpoint(run_dir) if resume else None
    start = found[1]["step"] if found else 0
    write_resolved_config(cfg, run_dir)
    for name in (METRICS_NAME, DATA_LOG_NAME):
        drop_steps_after(run_dir / name, start)
    splits = {"train": report, **({"eval": eval_report} if eval_report else {})}
    atomic_write_text(run_dir / "data_report.json", json.dumps(splits, indent=1))
    skipped = skipped_rows(splits)
    log = MetricsLog(run_dir, cfg.run, cfg.model_dump(mode="json"))
    data_log = (run_dir / DATA_LOG_NAME).open("a")
    # A local cluster gets a CPU for every actor the run asks one for (the judge server too).
    cpus = int(rl_needs(cfg, gpus=False).needed("CPU"))
    started_ray = init_ray(cpus, actor_log_dir(cfg.run, run_dir))
    cluster = None
    checkpoints: list[Path] = []
    producer = None
    try:
        cluster = RLCluster(cfg, verifier_names)
        atomic_write_text(run_dir / "placement.json", json.dumps(cluster.nodes, indent=1))
        print(placement_line(cluster.nodes), flush=True)
        if found:
            cluster.learners.load(found[0])
        cluster.push_weights()  # engines serve exactly the learners' weights from the first rollout
        first_record = {} if found else skipped  # the data report rides on the run's first line
        if eval_prompts and not found:
            log.log(0, {**first_record, **cluster.evaluate(eval_prompts, tokenizer)})
            first_record = {}
        producer = cluster.producer(prompts, sampler, tokenizer)
        if found:
            producer.restore(found[1]["producer"])
        producer.start()
        bar = tqdm(
            range(start + 1, cfg.run.steps + 1),
            desc="olmorl rl",
            unit="step",
            initial=start,
            total=cfg.run.steps,
            dynamic_ncols=True,
        )
        for step in bar:
            metrics, trained_prompts = train_one_step(cluster, producer, cfg, step)
            if eval_prompts and _evaluates_after(step, cfg):
                # The weights just pushed; the producer keeps sampling the next batch meanwhile.
                metrics.update(cluster.evaluate(eval_prompts, tokenizer))
                if metrics.get("eval/skipped"):
                    bar.write(f"step {step}: evaluation skipped, no rollout engine was left")
            log.log(step, {**first_record, **metrics})
            first_record = {}
            data_log.write(json.dumps({"step": step, "prompts": trained_prompts}) + "\n")
            data_log.flush()
            bar.set_postfix(reward=f"{metrics['reward']:.3f}", step_s=f"{metrics['time/step']:.1f}")
            if step == cfg.run.steps or (
                cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0
            ):
                # Between steps: the snapshot's in-flight prompts are exactly the untrained ones.
                state = {"producer": producer.snapshot(), "policy_version": cluster.version}
                checkpoints.append(
                    write_checkpoint(
                        run_dir, step, state, cluster.learners.save, cfg.run.keep_checkpoints
                    )
                )
    except (
        LearnerFailed,
        LearnerStalled,
        VerifierDown,
        RolloutStalled,
        EngineLost,
        ActorStartTimeout,
        RayActorError,  # any other actor of the run that died: a stop to resume from
    ) as e:
        # An actor that died may have died with its node: say so, once Ray has noticed (a lost
        # engine that could not be replaced says it itself).
        lost_actor = isinstance(e, RayActorError) or "WeightPushFailed" in str(e)
        gone = cluster.departed(NODE_DEATH_WAIT_S if lost_actor else 0.0) if cluster else ""
        raise stopped(e, run_dir, gone) from None
    finally:
        log.close()
        data_log.close()
        if producer is not None:
            producer.stop()
        if cluster is not None:
            cluster.shutdown()
        if started_ray:
            ray.shutdown()
    plot = plot_metrics(
        log.path,
        run_dir / "reward.png",
        [
            ("reward", "mean reward"),
            *([("eval/reward", "held-out reward")] if eval_prompts else []),
            ("response_tokens", "response tokens"),
        ],
    )
    return RunResult(run_dir, log.path, plot, tuple(checkpoints), start)


NODE_DEATH_WAIT_S = 30.0
"""How long a run stopped by a dead actor waits for Ray to tell whether its node died with it."""


def placement_line(nodes: dict[str, dict[str, str]]) -> str:
    """Where the run's actors started, one node after another: "placement: learner rank 0,
    learner rank 1 on node 3f2a9c1e07b4 (10.0.0.1); rollout engine 0 on node ...". The same is
    in the run directory's placement.json."""
    by_node: dict[str, list[str]] = {}
    for actor, where in nodes.items():
        by_node.setdefault(f"node {where['node_id'][:12]} ({where['ip']})", []).append(actor)
    return "placement: " + "; ".join(f"{', '.join(a)} on {n}" for n, a in by_node.items())


def check_verifier_hosts(names: list[str]) -> None:
    """Prints what each verifier found on this host (which sandboxes run model-written code);
    raises VerifierUnavailable, before any actor starts, where one cannot run here."""
    from verifiers import get_verifier_class

    for name in names:
        found = get_verifier_class(name).check_host()
        if found:
            print(found, flush=True)


def _evaluates_after(step: int, cfg: RLConfig) -> bool:
    """Whether held-out evaluation runs after `step`: every eval.every steps and after the last."""
    return step == cfg.run.steps or bool(cfg.eval.every and step % cfg.eval.every == 0)


def load_rl_prompts(data: DataConfig, tokenizer) -> tuple[list[RLRow], list[Prompt], dict]:
    """The rows of `data.train`, each as a Prompt for the engines and verifiers, and the report
    of rows kept and skipped per source."""
    from olmorl.data.prompts import load_prompts
    from olmorl.data.thinking import opens_thinking
    from verifiers import available_verifiers

    rows, prompt_ids, report = load_prompts(data, tokenizer, available_verifiers())
    prompts = [
        Prompt(ids, row.as_verifier_row(), opens_thinking(row, tokenizer, data.prompt_format))
        for ids, row in zip(prompt_ids, rows)
    ]
    return rows, prompts, report


def train_one_step(
    cluster, producer, cfg: RLConfig, step: int
) -> tuple[dict[str, float], list[int]]:
    """Take a batch → build it → optimizer step(s) → weight push; returns the step's metrics and
    the prompts it trained on, in the order taken.

    The producer keeps generating throughout (up to algo.async_steps batches ahead), so the time
    spent waiting for the batch is the learner's idle time.
    """
    from olmorl.rl.batch import build_step_batch

    def restore_engines() -> None:  # the learners are idle while the batch fills
        for engine in cluster.install_replacements():
            producer.engine_restored(engine)

    t_start = time.perf_counter()
    restore_engines()
    taken = producer.take(cluster.version, cfg.run.stage_timeout_s, restore_engines)
    t_taken = time.perf_counter()
    batch = build_step_batch(
        taken.groups, cfg.algo, cfg.learner.num_workers, cfg.learner.micro_batch_tokens
    )
    learner_metrics = cluster.train(batch) if batch.per_rank[0] else {}
    t_trained = time.perf_counter()
    version = cluster.push_weights()
    t_synced = time.perf_counter()
    producer.step_done(step)
    trained_tokens = sum(len(c.token_ids) for g in taken.groups for c in g.group.completions)
    step_s = t_synced - t_start
    metrics = {
        # `reward` is the producer's, over all it sampled; the trained batch's is `batch/reward`.
        **{f"batch/{k}" if k.startswith("reward") else k: v for k, v in batch.stats.items()},
        **taken.stats,
        **learner_metrics,
        **cluster.reward_stats(),
        **cluster.engine_stats(),
        "policy_version": version,
        "time/step": step_s,
        "time/wait_for_rollouts": t_taken - t_start,
        "time/train": t_trained - t_taken,
        "time/weight_sync": t_synced - t_trained,
        "learner_idle_fraction": (t_taken - t_start) / step_s,
        "tokens_per_s": trained_tokens / step_s,
    }
    return metrics, [g.group.prompt_index for g in taken.groups]

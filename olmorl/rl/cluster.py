"""The actors of one RL run and the verbs the loop calls on them as a whole.

Rollout engines (vLLM), learner ranks (one torch.distributed group) and reward workers, started
on the current Ray cluster; `producer()` keeps the engines and reward workers busy (producer.py).
An engine that dies is replaced in the background once its processes are gone, and rejoins once
it holds the current weights. Each engine is started with a tag of its own in its environment
(processes.py): its processes, orphaned ones included, are found on any node by that tag.
"""

import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from functools import partial

import ray
from ray.exceptions import RayActorError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from olmorl.actor_logs import actor_options
from olmorl.config import AlgorithmConfig, RLConfig, VerifiersConfig
from olmorl.config.rl import JudgeServerConfig
from olmorl.data.thinking import response_decoder
from olmorl.placement import rl_needs
from olmorl.plan.preflight import check_gpu_memory
from olmorl.processes import tagged
from olmorl.ray_init import Reservation, cluster_uses_gpus, reserve, wait_started
from olmorl.rl.batch import StepBatch
from olmorl.rl.producer import ProducerSettings, RolloutProducer
from olmorl.rl.prompts import PromptSampler
from olmorl.rl.replacement import start_with_backoff, wait_until_gone
from olmorl.rl.rewards import RewardWorker
from olmorl.rl.types import Prompt
from olmorl.rollout.engine import RolloutEngine
from olmorl.rollout.judge_server import JudgeServer
from olmorl.rollout.weight_sync import build_weight_sink
from olmorl.train.learners import LearnerGroup

REPLACER_JOIN_S = 10.0
"""How long shutdown waits for each replacement thread to notice it and end."""
NODE_ANSWER_S = 30.0
"""How long a node may take to run the check for a dead engine's processes: a node that died
is only marked dead by Ray after it has missed its heartbeats for a while (15 s here)."""
GPU_PROBE_TIMEOUT_S = 60.0
"""How long the memory check waits for a free GPU to measure; on a cluster busy with other jobs
the run goes on unchecked rather than wait as long again for its reservation."""


class RLCluster:
    def __init__(self, cfg: RLConfig, verifier_names: Sequence[str]):
        self.cfg = cfg
        # Checked (and on GPUs held) before any actor starts: a run too big for the cluster
        # stops here with what is missing, instead of its actors waiting for GPUs forever, or
        # running out of memory at the first step.
        gpus, limit = cluster_uses_gpus(), cfg.run.stage_timeout_s
        if gpus and cfg.run.check_gpu_memory:  # on free GPUs, before the reservation takes them
            for unchecked in check_gpu_memory(cfg, min(limit, GPU_PROBE_TIMEOUT_S)):
                print(unchecked, file=sys.stderr)
        self.placement = reserve(rl_needs(cfg, gpus), limit)
        self.rollout_actors, self.reward_workers, self.judge_server = [], [], None
        self.learners = None
        self._replacing = threading.Lock()
        self._replacements: dict[int, ray.actor.ActorHandle] = {}
        # Replacements still starting; `shutdown` kills them, and once it has begun
        # (`_closing`) no replacement starts or is kept.
        self._starting: dict[int, ray.actor.ActorHandle] = {}
        self._closing = False
        self._replacers: list[threading.Thread] = []
        # Each engine's process tag: what must be gone before a replacement may take its GPUs.
        self._engine_tags: dict[int, str] = {}
        try:
            self._start(verifier_names)
        except BaseException:
            # On CPU nothing is reserved, so releasing the placement stops no actor: the ones
            # already created are killed here, or a shared cluster keeps their CPUs.
            self._kill_started()
            self.placement.release()
            raise

    def _kill_started(self) -> None:
        if self.learners is not None:
            self.learners.shutdown()
        for actor in [*self.rollout_actors, *self.reward_workers, self.judge_server]:
            if actor is not None:
                ray.kill(actor)
        self._reap_all()

    def _reap_all(self) -> None:
        """SIGKILLs whatever still runs with any engine's current tag, on every node: a killed
        actor's vLLM processes outlive it and would keep its GPU memory after the run."""
        with self._replacing:
            tags = list(self._engine_tags.values())
        for tag in tags:
            try:
                _kill_tagged(tag)
            except RayError:
                pass  # the cluster is going away; nothing more to do here

    def _start(self, verifier_names: Sequence[str]) -> None:
        cfg, limit = self.cfg, self.cfg.run.stage_timeout_s
        self.rollout_actors = [self._new_engine(i) for i in range(cfg.rollout.num_actors)]
        # Engines that died, and their replacements once started (not yet given the weights).
        self._lost: set[int] = set()
        self._replacement_errors: dict[int, str] = {}
        self.learners = LearnerGroup(
            cfg.model,
            cfg.learner,
            cfg.run.seed,
            cfg.run.steps * cfg.algo.num_mini_batches,
            cfg.algo,
            cfg.rollout.temperature,
            limit,
            self.placement,
        )
        judge_url = self._start_judge_server(cfg.verifiers.judge_server)
        engines_started = {
            f"rollout engine {i}": a.start.remote() for i, a in enumerate(self.rollout_actors)
        }
        self.learners.wait("setup", self.learners.start())
        wait_started(engines_started, limit)
        verifiers = cfg.verifiers
        if judge_url is not None:
            url = wait_started({"the judge server": judge_url}, limit)["the judge server"]
            verifiers = _with_judge_url(verifiers, url)
        self.nodes = self._where()
        self.reward_workers = new_reward_workers(verifiers, verifier_names)
        self.version = 0

    def _where(self) -> dict[str, dict[str, str]]:
        """Each actor's Ray node id and IP, by name ("learner rank 0", "rollout engine 1")."""
        actors = {f"learner rank {r}": a for r, a in enumerate(self.learners.actors)}
        actors |= {f"rollout engine {i}": a for i, a in enumerate(self.rollout_actors)}
        if self.judge_server is not None:
            actors["judge server"] = self.judge_server
        limit = self.cfg.run.stage_timeout_s
        found = ray.get([a.where.remote() for a in actors.values()], timeout=limit)
        return dict(zip(actors, found, strict=True))

    def _new_engine(self, index: int) -> ray.actor.ActorHandle:
        """Engine `index` as a new actor (not started), with a new process tag."""
        tag = f"olmorl-engine-{index}-{uuid.uuid4().hex[:12]}"
        with self._replacing:
            self._engine_tags[index] = tag
        return new_engine(self.cfg, index, self.placement, tag)

    def replace_engine(self, index: int) -> None:
        """Engine `index` died: starts a replacement in the background, once the dead engine's
        processes are gone (retrying the start with backoff). It serves nothing until
        `install_replacements` has given it the current weights."""
        name = f"rollout engine {index}"

        def start() -> None:
            if self._closing:
                return
            try:
                self._check_room_for_engine(index)
                self._retire_engine(index)
                engine = start_with_backoff(
                    lambda: self._start_engine(index), name, final=(EngineLost,)
                )
            except Exception as e:  # noqa: BLE001 -- reported by install_replacements
                with self._replacing:
                    self._replacement_errors[index] = f"{type(e).__name__}: {e}"
                return
            with self._replacing:
                if not self._closing:
                    self._replacements[index] = engine
                    return
            with contextlib.suppress(RayError):  # the run was shut down while it started
                ray.kill(engine)
                self._reap(index)

        with self._replacing:
            self._lost.add(index)
            replacer = threading.Thread(target=start, name=f"replace-engine-{index}", daemon=True)
            self._replacers.append(replacer)
        replacer.start()

    def _retire_engine(self, index: int) -> None:
        """Kills engine `index` (a crashed actor may be only half dead) and every process it ran,
        and waits until they are all gone: on a GPU they hold the memory its replacement needs."""
        ray.kill(self.rollout_actors[index])
        self._reap(index)

    def departed(self, wait_s: float = 0.0) -> str:
        """Which of the run's nodes have left the Ray cluster, with the actors they held, as one
        sentence ("" for none). Waits up to `wait_s` for one: Ray marks a dead node only once it
        has missed its heartbeats for a while (15 s here)."""
        deadline = time.monotonic() + wait_s
        while True:
            alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
            gone: dict[str, list[str]] = {}
            for actor, where in self.nodes.items():
                if where["node_id"] not in alive:
                    node = f"node {node_name(where)}"
                    gone.setdefault(node, []).append(actor)
            if gone or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        return "; ".join(
            f"{node} has left the Ray cluster, with {', '.join(actors)}"
            for node, actors in gone.items()
        )

    def _check_room_for_engine(self, index: int) -> None:
        """Raises EngineLost when no live node of the cluster could ever hold an engine (its
        node has left, say, and only that node had the engines' custom resource): waiting for
        the replacement to be scheduled would then wait for run.stage_timeout_s, for nothing."""
        group = self.placement.needs.group("engine")
        alive = [n for n in ray.nodes() if n["Alive"]]
        if any(group.fits_on(n["Resources"]) for n in alive):
            return
        where = self.nodes.get(f"rollout engine {index}")
        gone = where is not None and where["node_id"] not in {n["NodeID"] for n in alive}
        asked = ", ".join(f"{k} {v:g}" for k, v in group.ask().items())
        raise EngineLost(
            f"rollout engine {index} died"
            + (f" with its node {node_name(where)}" if gone else "")
            + f", and no live node of the Ray cluster has what an engine asks for ({asked}); "
            "bring such a node back"
        )

    def _reap(self, index: int) -> None:
        """Kills whatever still runs with engine `index`'s current tag, on any node, and waits
        until it is gone."""
        with self._replacing:
            tag = self._engine_tags[index]
        wait_until_gone(partial(_kill_tagged, tag), f"rollout engine {index}")

    def _start_engine(self, index: int) -> ray.actor.ActorHandle:
        """A new engine `index`, started. One whose start fails is killed with its processes
        before the error is raised, since the next attempt needs the GPU memory they hold."""
        limit = self.cfg.run.stage_timeout_s
        closing = EngineLost(f"rollout engine {index} not replaced: the run is shutting down")
        if self._closing:
            raise closing
        engine = self._new_engine(index)  # not under the lock: creating an actor can be slow
        with self._replacing:
            registered = not self._closing
            if registered:
                self._starting[index] = engine
        if not registered:
            ray.kill(engine)
            raise closing
        try:
            wait_started(
                {f"rollout engine {index}": engine.start.remote()},
                limit,
                check=lambda: self._check_room_for_engine(index),
            )
            where = ray.get(engine.where.remote(), timeout=limit)
        except BaseException:
            ray.kill(engine)
            self._reap(index)
            raise
        finally:
            with self._replacing:
                self._starting.pop(index, None)
        self.nodes[f"rollout engine {index}"] = where
        return engine

    def install_replacements(self) -> list[int]:
        """Gives every started replacement the current weights (the learners must be idle);
        returns the engine indices now serving again."""
        with self._replacing:
            errors = dict(self._replacement_errors)
            # On an error the started ones stay where shutdown finds them.
            ready, self._replacements = (
                ({}, self._replacements) if errors else (self._replacements, {})
            )
        if errors:
            index, error = next(iter(errors.items()))
            raise EngineLost(f"rollout engine {index} died and its replacement failed: {error}")
        for index, engine in ready.items():
            self.rollout_actors[index] = engine
            self._push([engine], self.cfg.rollout.weight_update)
            with self._replacing:
                self._lost.discard(index)
        return list(ready)

    def _live_engines(self) -> list[ray.actor.ActorHandle]:
        with self._replacing:
            return [a for i, a in enumerate(self.rollout_actors) if i not in self._lost]

    def _start_judge_server(self, server: JudgeServerConfig | None) -> ray.ObjectRef | None:
        """Starts the configured judge's vLLM server; returns the ref of its url (it starts while
        the engines and learners do)."""
        self.judge_server = None
        if server is None:
            return None
        self.judge_server = (
            ray.remote(JudgeServer)
            .options(**self.placement.actor_options("judge", 0), **actor_options("judge"))
            .remote(
                server.model,
                dtype=server.dtype,
                max_model_len=server.max_model_len,
                gpu_memory_utilization=server.gpu_memory_utilization,
                extra_args=server.extra_args,
            )
        )
        return self.judge_server.start.remote()

    def push_weights(self, mode: str | None = None, transfer: str | None = None) -> int:
        """Full weights from the learners to every engine; returns the policy version now served.
        `mode` (inflight, drain, abort) replaces rollout.weight_update, `transfer` (broadcast,
        file) rollout.weight_transfer."""
        self.version = self._push(
            self._live_engines(), mode or self.cfg.rollout.weight_update, transfer
        )
        return self.version

    def _push(self, engines: list, mode: str, transfer: str | None = None) -> int:
        rollout = self.cfg.rollout
        sink = build_weight_sink(
            transfer or rollout.weight_transfer,
            engines,
            mode,
            rollout.tensor_parallel_size,
            self.cfg.run.stage_timeout_s,
        )
        versions = self.learners.each(
            "push_weights", [(sink if rank == 0 else None,) for rank in range(self.world_size)]
        )
        return versions[0]

    def producer(
        self,
        prompts: Sequence[Prompt],
        sampler: PromptSampler,
        tokenizer,
        algo: AlgorithmConfig | None = None,
        fixed_lengths: Sequence[int] | None = None,
    ) -> RolloutProducer:
        """A rollout producer over this cluster's engines and reward workers (not started).

        `algo` replaces the run's algorithm settings (benchmarks compare several);
        `fixed_lengths[i]` makes every response to prompt i that many tokens long.
        """
        algo = algo or self.cfg.algo
        workers = self.reward_workers
        decode = response_decoder(tokenizer)

        def generate(prompt: int, engine: int, prompt_ids: list[int], n: int, seed: int):
            length = None if fixed_lengths is None else fixed_lengths[prompt]
            actor = self.rollout_actors[engine]
            return actor.generate.remote(prompt_ids, n, seed, fixed_length=length).future()

        def score(prompt: int, row, responses):
            texts = [decode(ids) for ids in responses]
            # By prompt, so that a prompt's repeated responses meet the same worker's cache.
            worker = workers[prompt % len(workers)]
            return worker.score_group.remote(row, texts, prompts[prompt].thinking).future()

        return RolloutProducer(
            ProducerSettings.from_algo(algo, self.cfg.run.seed),
            prompts,
            sampler,
            len(self.rollout_actors),
            generate,
            score,
            algo,
            engine_lost=lambda error: isinstance(error, RayActorError),
            on_engine_lost=self.replace_engine,
        )

    def evaluate(self, prompts: Sequence[Prompt], tokenizer) -> dict[str, float]:
        """`eval/...` metrics of the weights the engines serve now, on held-out `prompts`; the
        producer's requests go on beside it. When no engine is left to serve them (one died and
        its replacement is not in yet), `eval/skipped` is 1 and nothing else is logged."""
        from olmorl.rl.evaluation import NoEngineLeft

        try:
            return evaluate_on(
                self._live_engines(), self.reward_workers, self.cfg, prompts, tokenizer
            )
        except NoEngineLeft:
            return {"eval/skipped": 1.0}

    def engine_stats(self) -> dict[str, float]:
        """Each engine's tokens/s, and the engines' mean busy, occupancy and paused fractions,
        since the last call."""
        per_engine = []
        for ref in [a.take_activity.remote() for a in self._live_engines()]:
            try:
                per_engine.append(ray.get(ref))
            except RayActorError:
                pass  # died this step: the producer has it replaced
        if not per_engine:
            return {}
        metrics = {}
        for index, a in enumerate(per_engine):
            metrics[f"engine/{index}/tokens_per_s"] = a["tokens"] / max(a["wall_s"], 1e-9)
        for key in ("busy", "occupancy", "paused"):
            metrics[f"engine/{key}_fraction"] = sum(
                a[f"{key}_s"] / max(a["wall_s"], 1e-9) for a in per_engine
            ) / len(per_engine)
        metrics["time/generation_paused"] = max(a["paused_s"] for a in per_engine)
        return metrics

    def reward_stats(self) -> dict[str, float]:
        """Per-verifier calls, cache hits, timeouts, failures and latencies since the last call."""
        from verifiers.service import stats_metrics

        return stats_metrics(ray.get([w.take_stats.remote() for w in self.reward_workers]))

    def train(self, batch: StepBatch) -> dict[str, float]:
        """One optimizer step per mini-batch; metrics summed over ranks, averaged over mini-batches."""
        per_rank = self.learners.each("train_step", [(mbs,) for mbs in batch.per_rank])
        num_mini = len(per_rank[0])
        totals: dict[str, float] = {}
        for rank_results in per_rank:
            for mini in rank_results:
                for key, value in mini.items():
                    totals[key] = totals.get(key, 0.0) + value / num_mini
        return totals

    @property
    def world_size(self) -> int:
        return self.learners.world_size

    def shutdown(self) -> None:
        # A replacement starting now would outlive the run: none starts or is kept from here on,
        # and those under way are killed with the rest.
        with self._replacing:
            self._closing = True
            replacements = [*self._replacements.values(), *self._starting.values()]
        # After a failure some actors may be dead or stuck: each gets a bounded wait to stop its
        # engine processes cleanly, then every actor is killed.
        wait_quietly(
            [a.shutdown.remote() for a in self.rollout_actors]
            + [w.shutdown.remote() for w in self.reward_workers]
        )
        self.learners.shutdown()
        if self.judge_server is not None:
            wait_quietly([self.judge_server.shutdown.remote()])
            ray.kill(self.judge_server)
        for actor in self.rollout_actors + self.reward_workers + replacements:
            ray.kill(actor)
        with self._replacing:
            replacers = list(self._replacers)
        for replacer in replacers:  # briefly: their starts fail once their engines are killed
            replacer.join(timeout=REPLACER_JOIN_S)
        self._reap_all()
        self.placement.release()


def node_name(where: dict[str, str]) -> str:
    """A node in messages: its IP, and its Ray id shortened ("10.0.0.2 (id 3f2a9c1e07b4)")."""
    return f"{where['ip']} (id {where['node_id'][:12]})"


def new_engine(
    cfg: RLConfig, index: int, placement: Reservation, tag: str | None = None
) -> ray.actor.ActorHandle:
    """Rollout engine `index` of the run as a Ray actor (not started), where `placement` puts it;
    its processes carry `tag` (processes.py)."""
    max_model_len = cfg.data.max_prompt_tokens + cfg.rollout.max_response_tokens
    options = actor_options(f"engine-{index}", tag=tag)
    return (
        ray.remote(RolloutEngine)
        .options(**placement.actor_options("engine", index), **options)
        .remote(cfg.model, cfg.rollout, max_model_len, cfg.run.seed + index)
    )


@ray.remote(num_cpus=0)
def _kill_tagged_here(tag: str) -> list[int]:
    return tagged(tag, kill=True)


def _kill_tagged(tag: str) -> list[str]:
    """SIGKILLs every process carrying `tag` on every live Ray node; returns them as
    "pid@node". A node that is gone runs nothing."""
    calls = []
    for node in ray.nodes():
        if node["Alive"]:
            where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            call = _kill_tagged_here.options(scheduling_strategy=where).remote(tag)
            calls.append((node["NodeManagerAddress"], call))
    killed = set()  # several Ray nodes on one host all see its processes
    for address, call in calls:
        try:
            killed.update(f"{pid}@{address}" for pid in ray.get(call, timeout=NODE_ANSWER_S))
        except RayError:  # the node left or is leaving (unschedulable, died, or silent)
            continue
    return sorted(killed)


def new_reward_workers(
    verifiers: VerifiersConfig, verifier_names: Sequence[str]
) -> list[ray.actor.ActorHandle]:
    """`verifiers.num_workers` reward actors serving the named verifiers, on the driver's node:
    they share its fate, where on an engine's node they would stop the run when that node
    leaves the cluster."""
    driver_node = NodeAffinitySchedulingStrategy(
        ray.get_runtime_context().get_node_id(), soft=False
    )
    return [
        ray.remote(RewardWorker)
        .options(num_cpus=0, scheduling_strategy=driver_node, **actor_options(f"reward-{index}"))
        .remote(verifiers, verifier_names)
        for index in range(verifiers.num_workers)
    ]


def evaluate_on(
    engines: Sequence, reward_workers: Sequence, cfg: RLConfig, prompts: Sequence[Prompt], tokenizer
) -> dict[str, float]:
    """`eval/...` metrics of what `engines` serve on `prompts`, sampled as `cfg.eval` says."""
    from olmorl.rl.evaluation import evaluate

    settings = cfg.eval
    decode = response_decoder(tokenizer)

    def generate(engine: int, prompt_ids: list[int], n: int, seed: int):
        call = engines[engine].generate.remote(
            prompt_ids, n, seed, temperature=settings.temperature
        )
        return call.future()

    def score(prompt: Prompt, responses):
        worker = reward_workers[sum(prompt.token_ids) % len(reward_workers)]
        texts = [decode(ids) for ids in responses]
        return worker.score_group.remote(prompt.row, texts, prompt.thinking).future()

    return evaluate(
        prompts,
        settings.samples_per_prompt,
        len(engines),
        generate,
        score,
        cfg.run.seed,
        engine_lost=lambda error: isinstance(error, RayActorError),
    )


class EngineLost(RuntimeError):
    """A rollout engine died and could not be replaced."""


def wait_quietly(refs: list[ray.ObjectRef], timeout_s: float = 60.0) -> None:
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

    for ref in refs:
        try:
            ray.get(ref, timeout=timeout_s)
        except (GetTimeoutError, RayActorError, RayTaskError):
            pass


def _with_judge_url(verifiers: VerifiersConfig, url: str) -> VerifiersConfig:
    options = {**verifiers.options, "judge": {**verifiers.options.get("judge", {}), "url": url}}
    return verifiers.model_copy(update={"options": options})

"""The actors of one RL run and the verbs the loop calls on them as a whole.

Rollout engines (vLLM), learner ranks (one torch.distributed group) and reward workers, started
on the current Ray cluster. Generation and scoring overlap: each group goes to a reward worker
as soon as its engine returns it.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import ray
import torch

from olmorl.config import RLConfig, VerifiersConfig
from olmorl.config.rl import JudgeServerConfig
from olmorl.learner.worker import LearnerWorker
from olmorl.rl.batch import StepBatch
from olmorl.rl.rewards import RewardWorker
from olmorl.rl.types import Prompt, PromptGroup, ScoredGroup
from olmorl.rollout.engine import RolloutEngine
from olmorl.rollout.judge_server import JudgeServer
from olmorl.rollout.weight_sync import RayWeightSink


class RLCluster:
    def __init__(self, cfg: RLConfig, verifier_names: Sequence[str]):
        self.cfg = cfg
        gpu = 1 if torch.cuda.is_available() else 0
        max_model_len = cfg.data.max_prompt_tokens + cfg.rollout.max_response_tokens
        self.rollout_actors = [
            ray.remote(RolloutEngine)
            .options(num_cpus=1, num_gpus=gpu * cfg.rollout.tensor_parallel_size)
            .remote(cfg.model, cfg.rollout, max_model_len, cfg.run.seed + index)
            for index in range(cfg.rollout.num_actors)
        ]
        world = cfg.learner.num_workers
        self.learners = [
            ray.remote(LearnerWorker)
            .options(num_cpus=1, num_gpus=gpu)
            .remote(rank, world, cfg.model, cfg.learner, cfg.algo, cfg.rollout.temperature)
            for rank in range(world)
        ]
        judge_url = self._start_judge_server(cfg.verifiers.judge_server)
        address, port = ray.get(self.learners[0].address.remote())
        starting = [a.start.remote() for a in self.rollout_actors]
        ray.get(
            [learner.setup.remote(address, port, cfg.run.seed) for learner in self.learners]
            + starting
        )
        verifiers = (
            _with_judge_url(cfg.verifiers, ray.get(judge_url)) if judge_url else cfg.verifiers
        )
        self.reward_workers = [
            ray.remote(RewardWorker).options(num_cpus=0).remote(verifiers, verifier_names)
            for _ in range(verifiers.num_workers)
        ]
        self.version = 0

    def _start_judge_server(self, server: JudgeServerConfig | None) -> ray.ObjectRef | None:
        """Starts the configured judge's vLLM server; returns the ref of its url (it starts while
        the engines and learners do)."""
        self.judge_server = None
        if server is None:
            return None
        self.judge_server = (
            ray.remote(JudgeServer)
            .options(num_cpus=1, num_gpus=server.num_gpus)
            .remote(
                server.model,
                dtype=server.dtype,
                max_model_len=server.max_model_len,
                gpu_memory_utilization=server.gpu_memory_utilization,
                extra_args=server.extra_args,
            )
        )
        return self.judge_server.start.remote()

    def push_weights(self) -> int:
        """Full weights from the learners to every engine; returns the policy version now served."""
        sink = RayWeightSink(self.rollout_actors)
        versions = ray.get(
            [
                learner.push_weights.remote(sink if rank == 0 else None)
                for rank, learner in enumerate(self.learners)
            ]
        )
        self.version = versions[0]
        return self.version

    def rollout(
        self, prompts: Mapping[int, Prompt], seeds: Mapping[int, int], tokenizer
    ) -> list[ScoredGroup]:
        """Samples a group per prompt and scores it; groups come back in the order of `prompts`."""
        n = self.cfg.algo.group_size
        order = list(prompts)
        pending = {
            self.rollout_actors[i % len(self.rollout_actors)].generate.remote(
                prompts[p].token_ids, n, seeds[p]
            ): p
            for i, p in enumerate(order)
        }
        groups: dict[int, PromptGroup] = {}
        scoring = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            prompt = pending.pop(done[0])
            completions = ray.get(done[0])
            groups[prompt] = PromptGroup(
                prompt, tuple(prompts[prompt].token_ids), tuple(completions)
            )
            texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in completions]
            # By prompt, so that a prompt's repeated responses meet the same worker's cache.
            worker = self.reward_workers[prompt % len(self.reward_workers)]
            scoring[prompt] = worker.score_group.remote(prompts[prompt].row, texts)
        scored = []
        for prompt in order:
            rewards, per_verifier = ray.get(scoring[prompt])
            scored.append(ScoredGroup(groups[prompt], rewards, per_verifier))
        return scored

    def reward_stats(self) -> dict[str, float]:
        """Per-verifier calls, cache hits, timeouts, failures and latencies since the last call."""
        from verifiers.service import stats_metrics

        return stats_metrics(ray.get([w.take_stats.remote() for w in self.reward_workers]))

    def train(self, batch: StepBatch) -> dict[str, float]:
        """One optimizer step per mini-batch; metrics summed over ranks, averaged over mini-batches."""
        per_rank = ray.get(
            [learner.train_step.remote(mbs) for learner, mbs in zip(self.learners, batch.per_rank)]
        )
        num_mini = len(per_rank[0])
        totals: dict[str, float] = {}
        for rank_results in per_rank:
            for mini in rank_results:
                for key, value in mini.items():
                    totals[key] = totals.get(key, 0.0) + value / num_mini
        return totals

    def save_checkpoint(self, out_dir: Path) -> Path:
        ray.get([learner.save_checkpoint.remote(out_dir) for learner in self.learners])
        return out_dir

    def shutdown(self) -> None:
        ray.get(
            [a.shutdown.remote() for a in self.rollout_actors]
            + [w.shutdown.remote() for w in self.reward_workers]
        )
        ray.get([learner.shutdown.remote() for learner in self.learners])
        if self.judge_server is not None:
            ray.get(self.judge_server.shutdown.remote())
            ray.kill(self.judge_server)
        for actor in self.rollout_actors + self.learners + self.reward_workers:
            ray.kill(actor)


def _with_judge_url(verifiers: VerifiersConfig, url: str) -> VerifiersConfig:
    options = {**verifiers.options, "judge": {**verifiers.options.get("judge", {}), "url": url}}
    return verifiers.model_copy(update={"options": options})

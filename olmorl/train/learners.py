"""The learner ranks of one job as a group: started on Ray, called together, saved together.

Every verb of `LearnerWorker` that runs a forward pass is a collective, so the group always calls
all ranks at once and waits for all of them, but never silently forever: a rank that fails is
named with its error (LearnerFailed), and ranks that make no progress within the stage limit are
named with their Python stacks (LearnerStalled).
"""

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from olmorl.actor_logs import actor_options
from olmorl.algo import PackedRow
from olmorl.config import AlgorithmConfig, LearnerConfig, ModelConfig
from olmorl.learner.batch import shard_rows
from olmorl.learner.worker import remote_learner
from olmorl.placement import trainer_needs
from olmorl.ray_init import Reservation, cluster_uses_gpus, reserve, wait_started
from olmorl.train.checkpoints import TRAIN_STATE_DIR

_ROWS_PER_CALL = 16


class LearnerGroup:
    def __init__(
        self,
        model: ModelConfig,
        learner: LearnerConfig,
        seed: int,
        total_steps: int,
        algo: AlgorithmConfig | None = None,
        temperature: float = 1.0,
        stage_timeout_s: float = 3600.0,
        placement: Reservation | None = None,
    ):
        """`placement`: where the ranks go (RLCluster reserves for the whole run); None reserves
        for the ranks alone, released by `shutdown`."""
        self._owned = None
        if placement is None:
            placement = self._owned = reserve(
                trainer_needs(learner, cluster_uses_gpus()), stage_timeout_s
            )
        gpus = placement.needs.group("learner").gpus
        world = learner.num_workers
        # `stacks` answers on a thread of its own while a verb may be stuck.
        self.actors = [
            remote_learner()
            .options(
                **placement.actor_options("learner", rank),
                **actor_options(f"learner-{rank}", threads=len(learner.cpu_cores or ())),
            )
            .remote(rank, world, model, learner, algo, temperature, gpus=gpus)
            for rank in range(world)
        ]
        self.stage_timeout_s = stage_timeout_s
        self._setup = (model, learner, seed, total_steps)

    def start(self) -> list[ray.ObjectRef]:
        """Refs of every rank's setup (the caller may start other actors meanwhile)."""
        _, _, seed, total_steps = self._setup
        ready = {"learner rank 0": self.actors[0].address.remote()}
        address, port = wait_started(ready, self.stage_timeout_s)["learner rank 0"]
        return [
            a.setup.remote(address, port, seed, total_steps, timeout_s=self.stage_timeout_s)
            for a in self.actors
        ]

    @property
    def world_size(self) -> int:
        return len(self.actors)

    def each(self, verb: str, per_rank_args: Sequence[tuple]) -> list[Any]:
        """`verb(*per_rank_args[rank])` on every rank; the ranks' results in rank order."""
        refs = [
            getattr(actor, verb).remote(*args)
            for actor, args in zip(self.actors, per_rank_args, strict=True)
        ]
        return self.wait(verb, refs)

    def wait(self, verb: str, refs: list[ray.ObjectRef]) -> list[Any]:
        """The ranks' results of `verb` (one ref per rank), within the stage limit.

        Raises LearnerFailed naming the ranks that failed, LearnerStalled naming the stuck ones.
        """
        # One rank at a time: when a rank fails, its peers usually wait in a collective for it
        # forever, so its error must be seen as soon as it arrives.
        limit = self.stage_timeout_s
        deadline = None if limit is None else time.monotonic() + limit
        pending = list(refs)
        while pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, pending = ray.wait(pending, num_returns=1, timeout=remaining)
            if not ready:
                raise self._stalled(verb, refs)
            try:
                ray.get(ready)
            except (RayActorError, RayTaskError):
                raise self._failed(verb, refs) from None
        return ray.get(refs)

    def _failed(self, verb: str, refs: list[ray.ObjectRef]) -> "LearnerFailed":
        # A moment for the other ranks' errors (a peer whose collective broke) to arrive too.
        finished, _ = ray.wait(refs, num_returns=len(refs), timeout=2)
        causes = {}
        for rank, ref in enumerate(refs):
            if ref not in finished:
                continue  # waiting on a failed peer
            try:
                ray.get(ref)
            except RayTaskError as e:
                causes[rank] = f"{type(e.cause).__name__}: {e.cause}"
            except RayActorError:
                causes[rank] = "its process died"
        listed = "; ".join(f"rank {rank}: {cause}" for rank, cause in causes.items())
        return LearnerFailed(f"learner {verb} failed on {listed}", sorted(causes))

    def _stalled(self, verb: str, refs: list[ray.ObjectRef]) -> "LearnerStalled":
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
        stuck = [rank for rank, ref in enumerate(refs) if ref in pending]
        dumps = []
        for rank in stuck:
            try:
                dumps.append(
                    f"--- rank {rank} ---\n{ray.get(self.actors[rank].stacks.remote(), timeout=30)}"
                )
            except Exception as e:  # noqa: BLE001 -- the message matters more than the dump
                dumps.append(f"--- rank {rank} ---\n(no stack: {type(e).__name__}: {e})")
        ranks = ", ".join(map(str, stuck))
        return LearnerStalled(
            f"learner rank(s) {ranks} made no progress in {verb} for {self.stage_timeout_s:g} s "
            f"(run.stage_timeout_s); their stacks:\n" + "\n".join(dumps),
            stuck,
        )

    def all(self, verb: str, *args: Any) -> list[Any]:
        """`verb(*args)` on every rank."""
        return self.each(verb, [args] * self.world_size)

    def document_logps(
        self, rows: Sequence[PackedRow], label: str | None = None
    ) -> list[tuple[int, float, int]]:
        """`LearnerWorker.document_logps` over `rows` dealt to the ranks, a few rows per rank
        per call, so each call stays well inside the stage limit however many rows there are;
        `label` shows a progress bar."""
        from tqdm import tqdm

        per_rank = [mb.rows for mb in shard_rows(rows, self.world_size)]
        out = []
        starts = range(0, len(per_rank[0]), _ROWS_PER_CALL)
        for start in tqdm(starts, desc=label, unit="call", disable=label is None):
            chunk = [(part[start : start + _ROWS_PER_CALL],) for part in per_rank]
            out += [doc for part in self.each("document_logps", chunk) for doc in part]
        return out

    def mean_nll(self, rows: Sequence[PackedRow]) -> tuple[float, int]:
        """Token-mean negative log-likelihood of the rows' loss tokens, and their count."""
        documents = self.document_logps(rows)
        tokens = sum(count for _, _, count in documents)
        return -sum(total for _, total, _ in documents) / tokens, tokens

    def save(self, directory: Path) -> None:
        """The Hugging Face model (rank 0) and every rank's training state into `directory`."""
        self.all("save_train_state", directory / TRAIN_STATE_DIR)
        self.all("save_checkpoint", directory, False)

    def load(self, directory: Path) -> int:
        """Restores the training state `save` wrote; returns the optimizer steps it had taken."""
        return self.all("load_train_state", directory / TRAIN_STATE_DIR)[0]

    def shutdown(self) -> None:
        # Best effort: after a failure a rank may be dead or stuck; kill what does not answer.
        try:
            ray.get([a.shutdown.remote() for a in self.actors], timeout=10)
        except (GetTimeoutError, RayActorError, RayTaskError):
            pass
        for actor in self.actors:
            ray.kill(actor)
        if self._owned is not None:
            self._owned.release()


class LearnerFailed(RuntimeError):
    """A learner rank raised or died; `ranks` are the ones that reported an error."""

    def __init__(self, message: str, ranks: list[int]):
        super().__init__(message)
        self.ranks = ranks


class LearnerStalled(RuntimeError):
    """Learner ranks made no progress within the stage limit; `ranks` are the stuck ones."""

    def __init__(self, message: str, ranks: list[int]):
        super().__init__(message)
        self.ranks = ranks


def sum_over_ranks(per_rank: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Metric shares summed over ranks (each rank reports its part of the step mean)."""
    totals: dict[str, float] = {}
    for metrics in per_rank:
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value
    return totals

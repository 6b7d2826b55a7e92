"""What a job's actors ask of the Ray cluster, as a pure function of its config (no Ray here).

`rl_needs`, `trainer_needs` and `eval_needs` list the actors a job starts and the CPUs and GPUs
each asks Ray for; `ClusterNeeds.shortfall` compares them with `ray.cluster_resources()` and says
in one message what is missing. `ray_init.reserve` runs that check before any actor starts.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from olmorl.config import LearnerConfig, RLConfig, RolloutConfig


@dataclass(frozen=True)
class ActorGroup:
    """Actors of one kind and what each asks Ray for."""

    role: str
    """How the code names the group when it places an actor: "learner", "engine", "judge"."""
    label: str
    """One actor of the group in messages: "learner rank"."""
    count: int
    """Actors in the group."""
    cpus: float
    """Logical CPUs each asks for."""
    gpus: int
    """GPUs each asks for."""
    gpu_note: str
    """How one actor uses its GPUs, in messages ("TP 8"); empty when that goes without saying."""
    sized_by: tuple[str, ...]
    """The config keys that size the group, for the advice in messages."""
    custom: tuple[tuple[str, float], ...] = ()
    """Custom Ray resources each asks for (`learner.ray_resources`, `rollout.ray_resources`)."""

    def total(self, resource: str) -> float:
        return self.count * self.per_actor(resource)

    def per_actor(self, resource: str) -> float:
        return {"CPU": self.cpus, "GPU": self.gpus, **dict(self.custom)}.get(resource, 0.0)

    def ask(self) -> dict[str, float]:
        """What one actor asks Ray for: a placement-group bundle, or a node's room."""
        return {"CPU": self.cpus, **({"GPU": self.gpus} if self.gpus else {}), **dict(self.custom)}

    def fits_on(self, node_resources: Mapping[str, float]) -> bool:
        """Whether a node with these total resources could ever hold one actor of the group."""
        return all(node_resources.get(k, 0.0) >= v for k, v in self.ask().items())

    def describe(self, resource: str) -> str:
        """E.g. "56 for 7 rollout engines × TP 8", "4 for the judge server"."""
        who = f"the {self.label}" if self.count == 1 else f"{self.count} {self.label}s"
        note = f" × {self.gpu_note}" if resource == "GPU" and self.gpu_note else ""
        return f"{self.total(resource):g} for {who}{note}"


@dataclass(frozen=True)
class ClusterNeeds:
    """Every actor group of one job, in the order their placement-group bundles are laid out."""

    groups: tuple[ActorGroup, ...]
    """Learner ranks first, then rollout engines, then the judge server (those a job has)."""
    gpus: bool
    """Whether the job runs on GPUs (see `uses_gpus`)."""

    def needed(self, resource: str) -> float:
        return sum(g.total(resource) for g in self.groups)

    def group(self, role: str) -> ActorGroup:
        return next(g for g in self.groups if g.role == role)

    def describe(self, resource: str) -> str:
        """E.g. "120 GPUs (64 for 64 learner ranks + 56 for 7 rollout engines × TP 8)"."""
        need = self.needed(resource)
        parts = " + ".join(g.describe(resource) for g in self.groups if g.total(resource))
        if resource not in ("CPU", "GPU"):
            return f"{need:g} of the custom resource {resource!r} ({parts})"
        return f"{need:g} {resource}{'s' * (need != 1)} ({parts})"

    def shortfall(
        self, resources: Mapping[str, float], largest_node_gpus: float | None = None
    ) -> str | None:
        """What `resources` (the cluster's totals) lack for this job, in one message; None if
        they suffice. `largest_node_gpus`: an actor's GPUs must all sit on one node."""
        problems, short = [], set()
        custom = sorted({name for g in self.groups for name, _ in g.custom})
        for resource in ("GPU", "CPU", *custom):
            need, have = self.needed(resource), resources.get(resource, 0.0)
            if need > have:
                short.add(resource)
                problems.append(
                    f"this run needs {self.describe(resource)} and the Ray cluster has {have:g}"
                )
        if largest_node_gpus is not None and "GPU" not in short:
            for g in self.groups:
                if g.gpus > largest_node_gpus:
                    short.add("GPU")
                    problems.append(
                        f"each {g.label} needs its {g.gpus} GPUs on one node and the cluster's "
                        f"largest node has {largest_node_gpus:g}"
                    )
        if not problems:
            return None
        keys = [k for g in self.groups if any(g.total(r) for r in short) for k in g.sized_by]
        lower = keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} or {keys[-1]}"
        return (
            f"{'; '.join(problems)}. Lower {lower}, or run on a larger Ray cluster "
            "(`ray job submit`, or RAY_ADDRESS naming it)"
        )

    def bundles(self) -> list[dict[str, float]]:
        """One placement-group bundle per actor, in `groups` order."""
        out = []
        for g in self.groups:
            out += [g.ask()] * g.count
        return out

    def bundle_index(self, role: str, index: int) -> int:
        """Where actor `index` of group `role` sits in `bundles()`."""
        offset = 0
        for g in self.groups:
            if g.role == role:
                if not 0 <= index < g.count:
                    raise IndexError(f"{g.label} {index} of {g.count}")
                return offset + index
            offset += g.count
        raise KeyError(role)


def uses_gpus(resources: Mapping[str, float]) -> bool:
    """Whether a job runs on GPUs: whenever the cluster has any. The driver's own devices do not
    count: under `ray job submit` it often runs on a head node without GPUs."""
    return resources.get("GPU", 0.0) > 0


def learner_group(learner: LearnerConfig, gpus: bool) -> ActorGroup:
    return ActorGroup(
        "learner",
        "learner rank",
        learner.num_workers,
        1,
        int(gpus),
        "",
        ("learner.num_workers",),
        tuple(sorted(learner.ray_resources.items())),
    )


def engine_group(rollout: RolloutConfig, gpus: bool) -> ActorGroup:
    tp = rollout.tensor_parallel_size
    return ActorGroup(
        "engine",
        "rollout engine",
        rollout.num_actors,
        1,
        tp if gpus else 0,
        f"TP {tp}" if tp > 1 else "",
        ("rollout.num_actors", *(("rollout.tensor_parallel_size",) if gpus else ())),
        tuple(sorted(rollout.ray_resources.items())),
    )


def rl_needs(cfg: RLConfig, gpus: bool) -> ClusterNeeds:
    """The actors of an RL run: learner ranks, rollout engines and, if configured, the judge
    server (whose GPUs are its own setting, on CPU clusters too)."""
    groups = [learner_group(cfg.learner, gpus), engine_group(cfg.rollout, gpus)]
    judge = cfg.verifiers.judge_server
    if judge is not None:
        groups.append(
            ActorGroup(
                "judge",
                "judge server",
                1,
                1,
                judge.num_gpus,
                "",
                ("verifiers.judge_server.num_gpus",),
            )
        )
    return ClusterNeeds(tuple(groups), gpus)


def trainer_needs(learner: LearnerConfig, gpus: bool) -> ClusterNeeds:
    """The actors of an SFT or DPO run: its learner ranks."""
    return ClusterNeeds((learner_group(learner, gpus),), gpus)


def eval_needs(cfg: RLConfig, gpus: bool) -> ClusterNeeds:
    """The actors of `olmorl eval`: rollout engines (reward workers ask for nothing)."""
    return ClusterNeeds((engine_group(cfg.rollout, gpus),), gpus)

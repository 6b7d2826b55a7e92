"""Resolves an RL recipe against a cluster shape: which actors go on which node, what each GPU
holds, and, when it cannot fit, why and what would.

Placement is first-fit over the nodes in the order the run's placement group lays its bundles out
(learner ranks, rollout engines, the judge server), each actor's GPUs on one node, as Ray's
PACK strategy places them. A plan is refused when an actor finds no node with room, when a
learner rank's estimate exceeds its GPU, or when an engine's GPU cannot hold its weights and the
KV cache of one full-length sequence (vLLM does not start then). Fewer than `max_num_seqs`
full-length sequences in the KV cache is reported, not refused: vLLM preempts beyond it.
"""

import math
import re
from dataclasses import dataclass, replace

from olmorl.config import RLConfig
from olmorl.learner.attention import DENSE_MASK_KERNELS
from olmorl.placement import ActorGroup, ClusterNeeds, rl_needs
from olmorl.plan.memory import (
    LearnerSetup,
    engine_weight_bytes,
    kv_cache_bytes,
    learner_bytes,
)
from olmorl.plan.shapes import ModelShape, model_shape

GIB = 2**30
USABLE_SHARE = 0.95
"""Of a GPU's memory, what a learner rank may plan to fill: the CUDA context, the allocator's
fragmentation and the kernels' workspaces take the rest."""


@dataclass(frozen=True)
class ClusterShape:
    nodes: int
    gpus_per_node: int
    gpu_memory_gib: float

    @classmethod
    def parse(cls, text: str) -> "ClusterShape":
        """ "8x8:80": 8 nodes of 8 GPUs with 80 GiB each (the memory defaults to 80)."""
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*(?::\s*(\d+(?:\.\d+)?))?\s*", text)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            raise ValueError(f"--cluster {text!r}: expected NODESxGPUS[:GIB], e.g. 8x8:80")
        return cls(int(match[1]), int(match[2]), float(match[3] or 80))

    def __str__(self) -> str:
        return f"{self.nodes} node(s) x {self.gpus_per_node} GPUs x {self.gpu_memory_gib:g} GiB"


@dataclass(frozen=True)
class Plan:
    report: list[str]
    """What goes where and what each GPU holds, line by line."""
    placement_problems: list[str]
    """Why the actors do not pack onto the nodes, with what would; empty when they do."""
    memory_problems: list[str]
    """Why a learner rank or an engine does not fit its GPU, with what would; empty when both
    do."""

    @property
    def problems(self) -> list[str]:
        """Why the recipe cannot run on the cluster, each with what would; empty when it fits."""
        return self.placement_problems + self.memory_problems


def place(needs: ClusterNeeds, cluster: ClusterShape) -> list[list[str]] | None:
    """Per node, the actors on it ("learner rank 3", "rollout engine 0 (TP 8)"); None when some
    actor finds no node with room for all its GPUs."""
    free = [cluster.gpus_per_node] * cluster.nodes
    nodes: list[list[str]] = [[] for _ in range(cluster.nodes)]
    for group in needs.groups:
        for index in range(group.count):
            node = next((n for n, room in enumerate(free) if room >= group.gpus), None)
            if node is None:
                return None
            free[node] -= group.gpus
            nodes[node].append(_actor_name(group, index))
    return nodes


def _actor_name(group: ActorGroup, index: int) -> str:
    name = group.label if group.count == 1 else f"{group.label} {index}"
    return f"{name} ({group.gpu_note})" if group.gpu_note else name


def learner_setup(cfg: RLConfig) -> LearnerSetup:
    strategy = cfg.learner.strategy
    attn = cfg.model.attn_implementation
    return LearnerSetup(
        micro_batch_tokens=cfg.learner.micro_batch_tokens,
        world_size=cfg.learner.num_workers,
        compute_bytes=2 if cfg.model.dtype == "bfloat16" else 4,
        activation_checkpointing=strategy.activation_checkpointing,
        offload_optimizer=getattr(strategy, "offload_optimizer", False),
        chunk_tokens=cfg.learner.logprob_chunk_tokens,
        # Unset, the learners pick flash-attn or flex on a GPU: no dense mask.
        dense_masks=attn in DENSE_MASK_KERNELS,
    )


def plan_rl(cfg: RLConfig, cluster: ClusterShape, shape: ModelShape | None = None) -> Plan:
    """The plan of RL recipe `cfg` on `cluster`; `shape` defaults to the policy's
    (`model_shape(cfg.model.path)`)."""
    shape = shape or model_shape(cfg.model.path)
    needs = rl_needs(cfg, gpus=True)
    gpu_bytes = cluster.gpu_memory_gib * GIB
    report = [
        f"cluster: {cluster}; the recipe needs {needs.describe('GPU')}",
        f"model: {cfg.model.path}, {shape.num_params / 1e9:.2f}B parameters",
    ]
    placement_problems, memory_problems = [], []
    nodes = place(needs, cluster)
    if nodes is None:
        placement_problems.append(_placement_problem(cfg, needs, cluster, shape))
    else:
        for index, actors in enumerate(nodes):
            report.append(f"node {index}: {', '.join(actors) if actors else '(idle)'}")
    report.append(
        f"reward workers: {cfg.verifiers.num_workers}, no GPU, on the driver's node (the head "
        "under `ray job submit`)"
    )

    setup = learner_setup(cfg)
    learner = learner_bytes(shape, setup)
    report.append(
        f"learner rank: {_gib(sum(learner.values()))} of {_gib(gpu_bytes)} "
        f"({', '.join(f'{k} {_gib(v)}' for k, v in learner.items())}; "
        f"{setup.micro_batch_tokens:,}-token micro-batches, {setup.world_size}-way sharding, "
        f"checkpointing {'on' if setup.activation_checkpointing else 'off'})"
    )
    if not _learner_fits(shape, setup, gpu_bytes):
        longest = cfg.data.max_prompt_tokens + cfg.rollout.max_response_tokens
        memory_problems.append(_learner_problem(shape, setup, gpu_bytes, longest))

    tp = cfg.rollout.tensor_parallel_size
    context = cfg.data.max_prompt_tokens + cfg.rollout.max_response_tokens
    weights = engine_weight_bytes(shape, tp)
    room = cfg.rollout.gpu_memory_utilization * gpu_bytes - weights
    per_sequence = kv_cache_bytes(shape, 1, context, tp)
    fits = max(0, math.floor(room / per_sequence))
    wanted = cfg.rollout.max_num_seqs
    report.append(
        f"rollout engine GPU (TP {tp}): weights {_gib(weights)}, KV cache room "
        f"{_gib(max(room, 0))} at gpu_memory_utilization {cfg.rollout.gpu_memory_utilization:g}; "
        f"a {context:,}-token sequence takes {_gib(per_sequence)}, so {fits} of max_num_seqs "
        f"{wanted} fit at full length"
        + ("" if fits >= wanted else " (vLLM preempts the rest; shorter ones share the room)")
    )
    if fits < 1:
        memory_problems.append(_engine_problem(cfg, shape, gpu_bytes, context))
    return Plan(report, placement_problems, memory_problems)


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _placement_problem(
    cfg: RLConfig, needs: ClusterNeeds, cluster: ClusterShape, shape: ModelShape
) -> str:
    total = cluster.nodes * cluster.gpus_per_node
    message = needs.shortfall(
        {"GPU": total, "CPU": math.inf}, largest_node_gpus=cluster.gpus_per_node
    ) or (f"the actors do not pack onto {cluster}: no node has room for some actor's GPUs")
    smaller = _smaller_split(cfg, needs, cluster, shape)
    if smaller is None:
        return f"{message}. Nothing smaller fits {cluster} either"
    return f"{message}. On {cluster} this would fit: {smaller}"


def _smaller_split(
    cfg: RLConfig, needs: ClusterNeeds, cluster: ClusterShape, shape: ModelShape
) -> str | None:
    """Fewer learner ranks and engines that pack onto the cluster, learner memory included:
    the fewest learner ranks whose shards fit, the rest of the GPUs as engines."""
    judge = next((g.gpus for g in needs.groups if g.role == "judge"), 0)
    tp = cfg.rollout.tensor_parallel_size
    gpu_bytes = cluster.gpu_memory_gib * GIB
    setup = learner_setup(cfg)
    for learners in range(1, cluster.nodes * cluster.gpus_per_node):
        if not _learner_fits(shape, replace(setup, world_size=learners), gpu_bytes):
            continue
        most_engines = (cluster.nodes * cluster.gpus_per_node - learners - judge) // tp
        if most_engines < 1:
            return None
        for engines in range(most_engines, 0, -1):
            smaller = cfg.model_copy(
                update={
                    "learner": cfg.learner.model_copy(update={"num_workers": learners}),
                    "rollout": cfg.rollout.model_copy(update={"num_actors": engines}),
                }
            )
            if place(rl_needs(smaller, gpus=True), cluster) is not None:
                return f"learner.num_workers={learners} rollout.num_actors={engines}"
    return None


def _learner_fits(shape: ModelShape, setup: LearnerSetup, gpu_bytes: float) -> bool:
    return sum(learner_bytes(shape, setup).values()) <= USABLE_SHARE * gpu_bytes


def _learner_problem(shape: ModelShape, setup: LearnerSetup, gpu_bytes: float, longest: int) -> str:
    """What a learner rank lacks, and the settings that fit: a smaller micro-batch (never below
    the `longest` prompt + response, which one micro-batch must hold), activation
    checkpointing, optimizer offload."""
    need = sum(learner_bytes(shape, setup).values())
    options = []
    smaller = replace(setup, micro_batch_tokens=longest)
    if longest < setup.micro_batch_tokens and _learner_fits(shape, smaller, gpu_bytes):
        tokens = setup.micro_batch_tokens
        while not _learner_fits(shape, replace(setup, micro_batch_tokens=tokens), gpu_bytes):
            tokens = max(longest, tokens // 2)
        options.append(f"learner.micro_batch_tokens={tokens}")
    checkpointed = replace(setup, activation_checkpointing=True)
    if not setup.activation_checkpointing and _learner_fits(shape, checkpointed, gpu_bytes):
        options.append("learner.strategy.activation_checkpointing=true")
    offloaded = replace(setup, offload_optimizer=True)
    if not setup.offload_optimizer and _learner_fits(shape, offloaded, gpu_bytes):
        options.append("learner.strategy=deepspeed with offload_optimizer: true")
    advice = "; or ".join(options) if options else "more learner ranks (learner.num_workers)"
    return (
        f"a learner rank needs {_gib(need)} and a GPU has {_gib(gpu_bytes)} "
        f"({USABLE_SHARE:.0%} usable). Would fit: {advice}"
    )


def _engine_problem(cfg: RLConfig, shape: ModelShape, gpu_bytes: float, context: int) -> str:
    tp = cfg.rollout.tensor_parallel_size
    share = cfg.rollout.gpu_memory_utilization * gpu_bytes
    need = engine_weight_bytes(shape, tp) + kv_cache_bytes(shape, 1, context, tp)
    larger = next(
        (
            t
            for t in (2, 4, 8, 16)
            if t > tp
            and engine_weight_bytes(shape, t) + kv_cache_bytes(shape, 1, context, t) <= share
        ),
        None,
    )
    advice = (
        f"rollout.tensor_parallel_size={larger}"
        if larger
        else "a shorter rollout.max_response_tokens"
    )
    return (
        f"a rollout engine GPU needs {_gib(need)} for its weights and one {context:,}-token "
        f"sequence, and gpu_memory_utilization {cfg.rollout.gpu_memory_utilization:g} leaves it "
        f"{_gib(share)}. Would fit: {advice}"
    )

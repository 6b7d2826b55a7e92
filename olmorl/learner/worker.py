"""One learner rank: a sharded policy, AdamW, and the verbs the trainers call.

A plain class (Ray runs it as an actor via `remote_learner()`; tests may run it under
torch.multiprocessing). All ranks must call each collective verb together: `train_step`,
`push_weights` and `save_checkpoint` all-gather parameters.
"""

import json
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import ray
import torch
import torch.distributed as dist
from torch import Tensor

from olmorl.actor_logs import capture_output
from olmorl.algo import (
    PackedRow,
    document_sums,
    olmorl_policy_loss,
    preference_loss,
)
from olmorl.algo.nll import masked_nll_loss, masked_z_loss
from olmorl.algo.schedule import scheduled_lr
from olmorl.config import AlgorithmConfig, LearnerConfig, ModelConfig, PreferenceLossConfig
from olmorl.cpu import pin_to_cores
from olmorl.faults import inject
from olmorl.learner.attention import (
    DENSE_MASK_KERNELS,
    common_attn_implementation,
    resolve_attn_implementation,
)
from olmorl.learner.backend import DTYPES, build_learner_model, build_policy
from olmorl.learner.batch import MiniBatch, PreferenceMiniBatch
from olmorl.learner.checkpoint import write_hf_checkpoint
from olmorl.learner.device import cuda_index, measure_matmul_flops
from olmorl.learner.scoring import TokenScores, use_chunked_head
from olmorl.node_ip import node_ip_address, this_node
from olmorl.rendezvous import join_store, open_store

_COUNTERS_NAME = "learner.json"


class WeightSink(Protocol):
    """Where `push_weights` sends full tensors, one bucket at a time (rank 0 only)."""

    device: str
    """Where the sink wants the full tensors ("cpu", "cuda")."""

    def send(self, bucket: dict[str, Tensor], version: int, last: bool) -> None: ...


DIAGNOSTICS = "diagnostics"
"""The Ray concurrency group of `stacks`, beside the default group's single thread."""


_RENDEZVOUS_TIMEOUT_S = 1800.0
"""How long a rank waits at the rendezvous for the others without a stage limit (gloo's default
group timeout): the other ranks may still be loading their libraries or waiting for a node."""


def collective_timeout_s(stage_timeout_s: float) -> float:
    """The process group's timeout: later than the driver's stage deadline, so that a stalled
    step is reported by the driver (with every rank's stack) rather than by a collective error
    on whichever rank's timer ran out first."""
    return stage_timeout_s + max(120.0, 0.1 * stage_timeout_s)


class LearnerWorker:
    def __init__(
        self,
        rank: int,
        world_size: int,
        model: ModelConfig,
        learner: LearnerConfig,
        algo: AlgorithmConfig | None = None,
        temperature: float = 1.0,
        gpus: int | None = None,
    ):
        """`gpus`: what the Ray actor asked for, 1 (train on the GPU Ray gave it) or 0 (CPU);
        None outside Ray (tests under torch.multiprocessing): CUDA if present, at LOCAL_RANK."""
        capture_output()
        self.gpus = gpus
        self.rank, self.world_size = rank, world_size
        self.model_cfg, self.learner_cfg, self.algo = model, learner, algo
        self.temperature = temperature
        self.version = 0
        """Optimizer steps taken: the policy version the weights are."""
        self.total_steps = 1
        self.rendezvous: dist.TCPStore | None = None
        """The process group's store: rank 0's own, opened by `address`; the others' connection
        to it, made by `setup`."""

    def address(self) -> tuple[str, int]:
        """Host and port of the process group's rendezvous (called on rank 0, before `setup`):
        this node's Ray IP, which ranks on other nodes can reach, and the port of the store that
        rank 0 opens here and holds until its `setup` joins the group through it."""
        self.rendezvous = open_store(self.world_size, _RENDEZVOUS_TIMEOUT_S)
        return node_ip_address(), self.rendezvous.port

    def where(self) -> dict[str, str]:
        """This rank's Ray node id and IP."""
        return this_node()

    def setup(
        self,
        master_addr: str,
        master_port: int,
        seed: int,
        total_steps: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Joins the process group, loads and shards the policy, builds the optimizer.

        `total_steps` (optimizer steps of the run) sets the length of the learning-rate schedule.
        `timeout_s` (run.stage_timeout_s) bounds each collective, with a margin
        (`collective_timeout_s`); None keeps torch's default, which differs by backend (NCCL 10
        min, gloo 30), so a long drain-mode push would trip NCCL's first. Rank 0 joins through
        the store `address` opened and ignores `master_addr` and `master_port`.
        """
        if self.learner_cfg.cpu_cores:
            pin_to_cores(self.learner_cfg.cpu_cores)
        index = self._cuda_index()
        device = "cpu" if index is None else "cuda"
        if index is not None:
            torch.cuda.set_device(index)  # "cuda" below means this device
        if self.rank > 0:
            self.rendezvous = join_store(
                master_addr, master_port, self.world_size, _RENDEZVOUS_TIMEOUT_S
            )
        elif self.rendezvous is None:
            raise RuntimeError("learner rank 0: call `address` before `setup`")
        timeout = None if timeout_s is None else timedelta(seconds=collective_timeout_s(timeout_s))
        if timeout is not None:
            # torch gives a store it makes the group's timeout, not one passed in; NCCL reads
            # its communicators' ids through the store, under the store's own timeout.
            self.rendezvous.set_timeout(timeout)
        dist.init_process_group(
            "nccl" if device == "cuda" else "gloo",
            store=self.rendezvous,
            rank=self.rank,
            world_size=self.world_size,
            timeout=timeout,
        )
        torch.manual_seed(seed)
        per_rank: list[str] = [""] * self.world_size
        dist.all_gather_object(
            per_rank,
            resolve_attn_implementation(
                self.model_cfg.attn_implementation, device, self.model_cfg.dtype
            ),
        )
        self.attn_implementation = common_attn_implementation(per_rank)
        # Master weights stay float32; the strategy casts to model.dtype for compute. Built on the
        # meta device and sharded (FSDP2) or partitioned as it is built (ZeRO-3), then filled
        # from the checkpoint by rank 0: no rank holds it whole.
        model = build_learner_model(
            self.model_cfg.path,
            self.learner_cfg,
            device,
            self.model_cfg.dtype,
            attn_implementation=self.attn_implementation,
        )
        model.config.use_cache = False
        # Every forward below scores tokens from the hidden states: no [T, V] logits are held.
        use_chunked_head(model, self.learner_cfg.logprob_chunk_tokens)
        self.policy = build_policy(
            model,
            self.learner_cfg,
            device,
            self.world_size,
            self.model_cfg.dtype,
            checkpoint=self.model_cfg.path,
        )
        self.model = self.policy.model
        self.device = device
        self.total_steps = total_steps or 1

    def _cuda_index(self) -> int | None:
        """The CUDA device this rank trains on; None on CPU."""
        if self.gpus is None:
            return int(os.environ.get("LOCAL_RANK", "0")) if torch.cuda.is_available() else None
        if self.gpus == 0:
            return None
        import ray

        return cuda_index(ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"), self.rank)

    def _optimizer_step(self) -> float:
        """Applies the accumulated gradients at the scheduled rate; returns the grad norm as a
        share (summing it over ranks reports it once)."""
        inject("learner.step", rank=self.rank, step=self.version + 1)
        lr = scheduled_lr(self.learner_cfg, self.version, self.total_steps)
        grad_norm = self.policy.step(lr)
        self.version += 1
        return grad_norm / self.world_size

    def train_step(self, mini_batches: Sequence[MiniBatch]) -> list[dict[str, float]]:
        """One rollout batch: π_old is frozen first, then one optimizer step per mini-batch.

        Returns per mini-batch metric sums for this rank; summing them over ranks gives the
        step's token means (loss, clip and TIS fractions, mismatch, entropy) and the grad norm.
        """
        old_logprobs = None
        if len(mini_batches) > 1:  # with a single mini-batch π_old = π and ratio ≡ 1
            old_logprobs = [self._logprobs_no_grad(mb.rows) for mb in mini_batches]
        results = []
        for index, mb in enumerate(mini_batches):
            metrics: dict[str, float] = {}
            for row_index, row in enumerate(mb.rows):
                old = None if old_logprobs is None else old_logprobs[index][row_index]
                for key, value in self._forward_backward(row, mb.total_loss_tokens, old).items():
                    metrics[key] = metrics.get(key, 0.0) + value
            metrics["grad_norm"] = self._optimizer_step()
            results.append(metrics)
        return results

    def _forward_backward(
        self, row: PackedRow, total_loss_tokens: int, old: Tensor | None
    ) -> dict[str, float]:
        scores = self._scores(row, self.temperature)
        logprobs = scores.logprobs  # [1, T]
        mask = row.loss_mask.to(self.device).unsqueeze(0)
        loss, metrics = olmorl_policy_loss(
            logprobs,
            logprobs.detach() if old is None else old.to(self.device).unsqueeze(0),
            row.sampler_logprobs.to(self.device).unsqueeze(0),
            row.advantages.to(self.device).unsqueeze(0),
            mask,
            total_loss_tokens,
            clip_low=self.algo.clip_low,
            clip_high=self.algo.clip_high,
            tis_cap=self.algo.tis_cap,
        )
        self._backward(loss)
        # The entropy is a metric: the scores carry it without gradient.
        entropy_share = torch.where(mask, scores.entropy, 0.0).sum() / total_loss_tokens
        return {"loss": float(loss.detach()), "entropy": float(entropy_share), **metrics.as_dict()}

    @torch.no_grad()
    def _logprobs_no_grad(self, rows: Sequence[PackedRow]) -> list[Tensor]:
        return [self._scores(row, self.temperature).logprobs[0].cpu() for row in rows]

    @torch.no_grad()
    def sequence_logprobs(self, token_ids: Sequence[int], temperature: float = 1.0) -> list[float]:
        """log p(token_t | tokens_<t) of one sequence under the current weights (position 0: 0)."""
        ids = torch.tensor([list(token_ids)], device=self.device)
        scores = self.model(input_ids=ids, use_cache=False, temperature=temperature)
        return scores.logprobs[0].tolist()

    def _scores(self, row: PackedRow, temperature: float) -> TokenScores:
        """The policy's token log-probs and entropies over one packed row, # [1, T] each."""
        kernel = self.attn_implementation
        batch = row.model_inputs(
            varlen=kernel == "flash_attention_2", pad=kernel in DENSE_MASK_KERNELS
        )
        inputs = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        scores = self.model(**inputs, temperature=temperature)  # [1, T] or [D, L] each
        return TokenScores(*(row.in_row_order(values) for values in scores))

    def _backward(self, loss: Tensor) -> None:
        # The strategies average gradients over ranks; each loss is already a share of the
        # global step mean, so scaling by the world size turns that average back into the sum.
        self.policy.backward(loss * self.world_size)

    def sft_step(self, batch: MiniBatch, z_loss: float = 0.0) -> dict[str, float]:
        """One optimizer step of token-mean NLL over the whole step's trained tokens (SFT and
        pretraining), plus `z_loss` times the mean squared log Z when it is not 0.

        Rows are accumulated one forward/backward at a time (gradient accumulation); returns
        this rank's metric shares: loss, tokens, grad_norm (and z_loss).
        """
        metrics: dict[str, float] = {}
        for row in batch.rows:
            scores = self._scores(row, 1.0)
            mask = row.loss_mask.to(self.device).unsqueeze(0)  # [1, T]
            loss, parts = masked_nll_loss(scores.logprobs, mask, batch.total_loss_tokens)
            if z_loss:
                penalty, z_parts = masked_z_loss(
                    scores.log_z, mask, batch.total_loss_tokens, z_loss
                )
                loss, parts = loss + penalty, {**parts, **z_parts}
            self._backward(loss)
            for key, value in parts.items():
                metrics[key] = metrics.get(key, 0.0) + value
        metrics["grad_norm"] = self._optimizer_step()
        return metrics

    def dpo_step(self, batch: PreferenceMiniBatch, loss_cfg: PreferenceLossConfig) -> dict:
        """One optimizer step of the preference loss over the step's pairs; metric shares."""
        metrics: dict[str, float] = {}
        for row, reference in zip(batch.rows, batch.reference_logps, strict=True):
            logps = self._scores(row, 1.0).logprobs  # [1, T]
            if row.num_loss_tokens == 0:  # a padding row: no pairs, but the collectives run
                self._backward(logps.sum() * 0.0)
                continue
            sums, lengths = document_sums(row, logps)  # [D], [D]
            reference = reference.to(self.device)  # [D]
            loss, parts = preference_loss(
                sums[0::2],
                sums[1::2],
                reference[0::2],
                reference[1::2],
                lengths[0::2],
                lengths[1::2],
                loss_cfg.kind,
                loss_cfg.beta,
                loss_cfg.gamma,
                batch.total_pairs,
            )
            self._backward(loss)
            for key, value in parts.items():
                metrics[key] = metrics.get(key, 0.0) + float(value)
        metrics["grad_norm"] = self._optimizer_step()
        return metrics

    def matmul_flops(self) -> float:
        """This rank's measured matmul FLOP/s in the training dtype, on its device and threads:
        the peak model FLOP utilisation is reported against where no vendor figure is given."""
        return measure_matmul_flops(self.device, DTYPES[self.model_cfg.dtype])

    @torch.no_grad()
    def document_logps(self, rows: Sequence[PackedRow]) -> list[tuple[int, float, int]]:
        """(document index, summed log-prob of its loss tokens, their count) per document.

        Rows must come in equal numbers on every rank (each forward is a collective); the
        documents of all-masked padding rows are left out.
        """
        out = []
        for row in rows:
            logps = self._scores(row, 1.0).logprobs  # [1, T]
            if row.num_loss_tokens == 0:
                continue
            sums, counts = document_sums(row, logps)
            out += zip(row.trajectory_indices, sums.tolist(), counts.tolist(), strict=True)
        return out

    def _full_parameters(self, device: str = "cpu"):
        return self.policy.full_parameters(DTYPES[self.model_cfg.dtype], device)

    def push_weights(self, sink: WeightSink | None, bucket_bytes: int = 256 << 20) -> int:
        """All-gathers full parameters bucket by bucket; rank 0 sends each bucket to `sink`.

        At most one bucket of full tensors is held at a time. Returns the policy version sent.
        """
        bucket: dict[str, Tensor] = {}
        size = 0
        names = [name for name, _ in self.model.named_parameters()]
        device = sink.device if self.rank == 0 else "cpu"
        for index, (name, tensor) in enumerate(self._full_parameters(device)):
            if self.rank != 0:
                continue
            bucket[name] = tensor
            size += tensor.numel() * tensor.element_size()
            last = index == len(names) - 1
            if size >= bucket_bytes or last:
                sink.send(bucket, self.version, last)
                bucket, size = {}, 0
        return self.version

    def save_checkpoint(self, out_dir: str | Path, atomic: bool = True) -> Path | None:
        """Writes a Hugging Face checkpoint (float32 → the model dtype) from rank 0; `atomic`
        writes it beside `out_dir` and renames (false: into `out_dir`, which the caller renames)."""
        state = dict(self._full_parameters())
        if self.rank != 0:
            return None
        return write_hf_checkpoint(
            state, self.policy.hf_config, self.model_cfg.path, out_dir, atomic=atomic
        )

    def save_train_state(self, directory: str | Path) -> None:
        """Weights, optimizer state and step counter for an exact resume (all ranks together)."""
        directory = Path(directory)
        self.policy.save_state(directory)
        if self.rank == 0:
            (directory / _COUNTERS_NAME).write_text(json.dumps({"version": self.version}))

    def load_train_state(self, directory: str | Path) -> int:
        """Restores `save_train_state`'s directory; returns the policy version it held."""
        directory = Path(directory)
        self.policy.load_state(directory)
        self.version = json.loads((directory / _COUNTERS_NAME).read_text())["version"]
        return self.version

    @ray.method(concurrency_group=DIAGNOSTICS)
    def stacks(self) -> str:
        """The Python stacks of this process's threads that are inside olmorl code (the verb
        being run; every thread if none is), for the watchdog's message."""
        import sys
        import threading
        import traceback

        names = {t.ident: t.name for t in threading.enumerate()}
        stacks = {
            names.get(ident, str(ident)): traceback.extract_stack(frame)
            for ident, frame in sys._current_frames().items()
            if ident != threading.get_ident()
        }
        ours = {
            name: stack
            for name, stack in stacks.items()
            if any("/olmorl/" in f.filename for f in stack)
        }
        return "\n".join(
            f"thread {name}:\n" + "".join(traceback.format_list(stack))
            for name, stack in (ours or stacks).items()
        )

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
        self.rendezvous = None


def remote_learner():
    """LearnerWorker as a Ray actor class: `stacks` on a thread of its own (the DIAGNOSTICS
    group), every other verb on the default group's single thread, where `setup` chose the rank's
    CUDA device (torch keeps the current device per thread)."""
    return ray.remote(concurrency_groups={DIAGNOSTICS: 1})(LearnerWorker)

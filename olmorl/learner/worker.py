"""One learner rank: a sharded policy, AdamW, and the verbs the trainers call.

A plain class (Ray runs it as an actor via `ray.remote(LearnerWorker)`; tests may run it under
torch.multiprocessing). All ranks must call each collective verb together: `train_step`,
`push_weights` and `save_checkpoint` all-gather parameters.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.device_mesh import init_device_mesh
from transformers import AutoModelForCausalLM

from olmorl.algo import PackedRow, olmorl_policy_loss, token_entropy, token_logprobs
from olmorl.config import AlgorithmConfig, LearnerConfig, ModelConfig
from olmorl.cpu import pin_to_cores
from olmorl.learner.batch import MiniBatch
from olmorl.learner.checkpoint import write_hf_checkpoint
from olmorl.learner.parallelize import parallelize_fsdp2

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
# FSDP wraps modules it recomputes; the rollout engines expect plain Hugging Face names.
_WRAPPER_PREFIX = "_checkpoint_wrapped_module."


class WeightSink(Protocol):
    """Where `push_weights` sends full tensors, one bucket at a time (rank 0 only)."""

    def send(self, bucket: dict[str, Tensor], version: int, last: bool) -> None: ...


class LearnerWorker:
    def __init__(
        self,
        rank: int,
        world_size: int,
        model: ModelConfig,
        learner: LearnerConfig,
        algo: AlgorithmConfig,
        temperature: float,
    ):
        self.rank, self.world_size = rank, world_size
        self.model_cfg, self.learner_cfg, self.algo = model, learner, algo
        self.temperature = temperature
        self.version = 0

    def address(self) -> tuple[str, int]:
        """Host and a free port for the process group's rendezvous (called on rank 0)."""
        import socket

        with socket.socket() as s:
            s.bind(("", 0))
            return socket.gethostbyname(socket.gethostname()), s.getsockname()[1]

    def setup(self, master_addr: str, master_port: int, seed: int) -> None:
        """Joins the process group, loads and shards the policy, builds the optimizer."""
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
        if self.learner_cfg.cpu_cores:
            pin_to_cores(self.learner_cfg.cpu_cores)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(
            "nccl" if device == "cuda" else "gloo", rank=self.rank, world_size=self.world_size
        )
        torch.manual_seed(seed)
        # Master weights stay float32; FSDP casts to model.dtype for compute.
        model = AutoModelForCausalLM.from_pretrained(self.model_cfg.path, dtype=torch.float32)
        model.config.use_cache = False
        mesh = init_device_mesh(device, (self.world_size,))
        if self.learner_cfg.strategy.name != "fsdp2":
            raise NotImplementedError(f"learner strategy {self.learner_cfg.strategy.name!r}")
        self.model = parallelize_fsdp2(
            model.to(device), self.learner_cfg.strategy, mesh, _DTYPES[self.model_cfg.dtype]
        ).train()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.learner_cfg.lr,
            weight_decay=self.learner_cfg.weight_decay,
            betas=(0.9, 0.999),
        )
        self.device = device

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
            grad_norm = torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.learner_cfg.max_grad_norm
            )
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.version += 1
            # The norm is global already; divide so the sum over ranks reports it once.
            metrics["grad_norm"] = (
                float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
                / self.world_size
            )
            results.append(metrics)
        return results

    def _forward_backward(
        self, row: PackedRow, total_loss_tokens: int, old: Tensor | None
    ) -> dict[str, float]:
        inputs = self._row_inputs(row)
        logits = self.model(**inputs).logits  # [1, T, V]
        logprobs = token_logprobs(logits, inputs["input_ids"], self.temperature)  # [1, T]
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
        # FSDP averages gradients over ranks; the loss is already a share of the global token
        # mean, so scaling by the world size turns that average back into the sum.
        (loss * self.world_size).backward()
        with torch.no_grad():
            entropy = token_entropy(logits.detach(), self.temperature)
            entropy_share = torch.where(mask, entropy, 0.0).sum() / total_loss_tokens
        return {"loss": float(loss.detach()), "entropy": float(entropy_share), **metrics.as_dict()}

    @torch.no_grad()
    def _logprobs_no_grad(self, rows: Sequence[PackedRow]) -> list[Tensor]:
        out = []
        for row in rows:
            inputs = self._row_inputs(row)
            out.append(
                token_logprobs(self.model(**inputs).logits, inputs["input_ids"], self.temperature)[
                    0
                ].cpu()
            )
        return out

    @torch.no_grad()
    def sequence_logprobs(self, token_ids: Sequence[int], temperature: float = 1.0) -> list[float]:
        """log p(token_t | tokens_<t) of one sequence under the current weights (position 0: 0)."""
        ids = torch.tensor([list(token_ids)], device=self.device)
        logits = self.model(input_ids=ids, use_cache=False).logits  # [1, T, V]
        return token_logprobs(logits, ids, temperature)[0].tolist()

    def _row_inputs(self, row: PackedRow) -> dict:
        return {
            k: v.to(self.device) if isinstance(v, Tensor) else v
            for k, v in row.model_inputs().items()
        }

    def _full_parameters(self):
        """Yields (HF name, full tensor in the model dtype on CPU); the tensor is None off rank 0.

        Every rank must iterate to the end: each parameter is an all-gather.
        """
        dtype = _DTYPES[self.model_cfg.dtype]
        for name, param in self.model.named_parameters():
            full = param.full_tensor() if hasattr(param, "full_tensor") else param.data
            tensor = full.detach().to(dtype).cpu() if self.rank == 0 else None
            yield name.replace(_WRAPPER_PREFIX, ""), tensor

    def push_weights(self, sink: WeightSink | None, bucket_bytes: int = 256 << 20) -> int:
        """All-gathers full parameters bucket by bucket; rank 0 sends each bucket to `sink`.

        At most one bucket of full tensors is held at a time. Returns the policy version sent.
        """
        bucket: dict[str, Tensor] = {}
        size = 0
        names = [name for name, _ in self.model.named_parameters()]
        for index, (name, tensor) in enumerate(self._full_parameters()):
            if self.rank != 0:
                continue
            bucket[name] = tensor
            size += tensor.numel() * tensor.element_size()
            last = index == len(names) - 1
            if size >= bucket_bytes or last:
                sink.send(bucket, self.version, last)
                bucket, size = {}, 0
        return self.version

    def save_checkpoint(self, out_dir: str | Path) -> Path | None:
        """Writes a Hugging Face checkpoint (float32 → the model dtype) atomically from rank 0."""
        state = dict(self._full_parameters())
        if self.rank != 0:
            return None
        return write_hf_checkpoint(state, self.model.config, self.model_cfg.path, out_dir)

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

"""`olmorl pretrain`: causal-LM training on a weighted mix of token sources, for pretraining,
midtraining and long-context extension alike (each is a config of this trainer).

Step k reads the next W = tokens_per_step / seq_len windows of its length phase's stream (which
window of which source each is comes from `MixtureStream`, a pure function of the seed), packs
them into rows and takes one optimizer step of token-mean NLL, plus z-loss when set, on the
learners' SFT step. A resumed run recomputes the streams, so it continues at the exact token where
it stopped. A length schedule starts a new stream, of longer windows, at each of its steps; with
`long_context`, the run first writes its start checkpoint with YaRN on the full-attention layers.
"""

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from olmorl.algo.schedule import scheduled_lr
from olmorl.config.pretrain import PretrainConfig
from olmorl.data.loading import DataError
from olmorl.data.token_arrays import load_token_source
from olmorl.data.token_mixture import BLOCK_WINDOWS, MixtureStream, WindowRef
from olmorl.data.token_rows import window_rows
from olmorl.learner.batch import shard_rows
from olmorl.train.learners import sum_over_ranks
from olmorl.train.loop import RunResult, run_offline
from olmorl.train.throughput import training_flops_per_token


@dataclass(frozen=True)
class LengthPhase:
    """Steps from `first_step` on read windows of `seq_len` tokens from a stream of their own."""

    first_step: int
    seq_len: int
    stream: MixtureStream
    flops_per_token: float


class PretrainTrainer:
    name = "pretrain"
    plot_panels = (
        ("loss", "train loss"),
        ("eval/loss", "held-out loss"),
        ("tokens_per_s", "tokens / s"),
        ("lr", "learning rate"),
    )

    def __init__(self, cfg: PretrainConfig):
        from transformers import AutoConfig, AutoTokenizer

        self.cfg = cfg
        data = cfg.data
        tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
        if tokenizer.eos_token_id is None:
            raise DataError(f"{cfg.model.path}: the tokenizer has no EOS token to end documents")
        self.eos_id = tokenizer.eos_token_id
        self.labels = [source.label for source in data.sources]
        self.sources = [
            load_token_source(s.path, tokenizer, data.text_field, s.raw_dtype) for s in data.sources
        ]
        model_config = AutoConfig.from_pretrained(cfg.model.path)
        self.phases = [
            LengthPhase(
                first_step,
                seq_len,
                self._stream(seq_len),
                training_flops_per_token(model_config, seq_len),
            )
            for first_step, seq_len in cfg.length_phases
        ]
        self.held_out = {
            Path(path).stem: self._first_windows(
                load_token_source(path, tokenizer, data.text_field), path
            )
            for path in data.eval
        }
        self.peak_flops = cfg.train.peak_flops_per_device
        self._last_step: tuple[int, tuple] | None = None
        self.data_report = {
            "train": {
                s.path: {
                    "tokens": len(tokens),
                    "mix_share": self.phases[0].stream.block_shares[i] / BLOCK_WINDOWS,
                    **{
                        f"windows/{phase.seq_len}": phase.stream.window_counts[i]
                        for phase in self.phases
                    },
                }
                for i, (s, tokens) in enumerate(zip(data.sources, self.sources, strict=True))
            },
            "eval": {name: {"windows": len(w)} for name, w in self.held_out.items()},
        }

    def _stream(self, seq_len: int) -> MixtureStream:
        sources = self.cfg.data.sources
        try:
            return MixtureStream(
                tuple(len(tokens) // seq_len for tokens in self.sources),
                tuple(source.weight for source in sources),
                self.cfg.run.seed,
                tuple(f"{s.path} (source {s.label!r}, {seq_len}-token windows)" for s in sources),
            )
        except ValueError as e:
            raise DataError(f"data.sources: {e}") from None

    def _first_windows(self, tokens: np.ndarray, path: str) -> list[np.ndarray]:
        """Held-out windows at the run's longest length: the context the run is for."""
        seq_len = max(seq_len for _, seq_len in self.cfg.length_phases)
        count = min(len(tokens) // seq_len, max(1, self.cfg.train.eval_tokens // seq_len))
        if count == 0:
            raise DataError(f"{path}: shorter than one window of data.seq_len={seq_len} tokens")
        return [np.asarray(tokens[i * seq_len : (i + 1) * seq_len]) for i in range(count)]

    def num_steps(self) -> int:
        return self.cfg.run.steps

    def prepare(self, learners) -> dict[str, float]:
        if self.peak_flops is None:
            self.peak_flops = min(learners.all("matmul_flops"))
            print(
                f"MFU is against a matmul peak measured on the learners: "
                f"{self.peak_flops / 1e9:.1f} GFLOP/s per rank ({self.cfg.model.dtype}), "
                "not a vendor figure"
            )
        return {"peak_flops_per_rank": self.peak_flops}

    def _phase(self, step: int) -> LengthPhase:
        return [phase for phase in self.phases if phase.first_step <= step][-1]

    def _step_windows(self, step: int) -> tuple[LengthPhase, list[WindowRef], list[np.ndarray]]:
        """The phase of step `step`, the windows it reads (the next ones of its phase's stream)
        and their tokens. The last step's are kept: the data log reads them again."""
        if self._last_step is not None and self._last_step[0] == step:
            return self._last_step[1]
        phase = self._phase(step)
        per_step = self.cfg.windows_per_step(step)
        refs = phase.stream.windows((step - phase.first_step) * per_step, per_step)
        seq_len = phase.seq_len
        windows = [
            np.asarray(self.sources[r.source][r.window * seq_len : (r.window + 1) * seq_len])
            for r in refs
        ]
        self._last_step = (step, (phase, refs, windows))
        return phase, refs, windows

    def step_data(self, step: int) -> dict:
        phase, refs, windows = self._step_windows(step)
        digest = hashlib.sha1()
        for window in windows:
            digest.update(window.astype(np.int64).tobytes())
        return {
            "seq_len": phase.seq_len,
            "windows": [[r.source, r.window] for r in refs],
            "tokens_sha1": digest.hexdigest(),
        }

    def _windows_seen(self, step: int) -> list[int]:
        """Windows each source gave in steps 1..step, over every length phase."""
        seen = [0] * len(self.sources)
        for phase, following in zip(self.phases, [*self.phases[1:], None], strict=True):
            last = min(step, following.first_step - 1) if following else step
            if last >= phase.first_step:
                read = (last - phase.first_step + 1) * self.cfg.windows_per_step(phase.first_step)
                seen = [a + b for a, b in zip(seen, phase.stream.source_counts(read), strict=True)]
        return seen

    def train_step(self, learners, step: int) -> dict[str, float]:
        start = time.perf_counter()
        cfg = self.cfg
        phase, _, windows = self._step_windows(step)
        rows = window_rows(
            windows, cfg.learner.micro_batch_tokens, self.eos_id, cfg.data.document_mask
        )
        batches = shard_rows(rows, learners.world_size)
        metrics = sum_over_ranks(
            learners.each("sft_step", [(mb, cfg.train.z_loss) for mb in batches])
        )
        tokens_per_s = cfg.train.tokens_per_step / (time.perf_counter() - start)
        seen = self._windows_seen(step)
        return {
            **metrics,
            "lr": scheduled_lr(cfg.learner, step - 1, self.num_steps()),
            "seq_len": float(phase.seq_len),
            "tokens_seen": float(step * cfg.train.tokens_per_step),
            "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * phase.flops_per_token / (self.peak_flops * learners.world_size),
            **{f"mix/{label}": n / sum(seen) for label, n in zip(self.labels, seen, strict=True)},
        }

    def evaluate(self, learners) -> dict[str, float]:
        metrics: dict[str, float] = {}
        total_nll = total_tokens = 0.0
        for name, windows in self.held_out.items():
            rows = window_rows(
                windows,
                self.cfg.learner.micro_batch_tokens,
                self.eos_id,
                self.cfg.data.document_mask,
            )
            loss, tokens = learners.mean_nll(rows)
            metrics[f"eval/{name}/loss"] = loss
            total_nll += loss * tokens
            total_tokens += tokens
        if total_tokens:
            metrics["eval/loss"] = total_nll / total_tokens
            metrics["eval/perplexity"] = math.exp(metrics["eval/loss"])
            metrics["eval/tokens"] = total_tokens
        return metrics


def run_pretrain(cfg: PretrainConfig, run_dir: Path, resume: bool = False) -> RunResult:
    if cfg.long_context is not None:
        cfg = cfg.model_copy(update={"model": _extended_start(cfg, run_dir)})
    return run_offline(PretrainTrainer(cfg), cfg, run_dir, resume)


def _extended_start(cfg: PretrainConfig, run_dir: Path):
    """The model config pointing at the start checkpoint with YaRN applied, written once into
    the run directory (a resumed run finds it there)."""
    from olmorl.models.yarn import write_yarn_checkpoint

    start = run_dir / "long_context_start"
    if not (start / "config.json").is_file():
        factor = cfg.long_context.yarn_factor
        print(f"extending {cfg.model.path} with YaRN x{factor:g} on its full-attention layers")
        write_yarn_checkpoint(cfg.model.path, start, factor)
    return cfg.model.model_copy(update={"path": str(start)})

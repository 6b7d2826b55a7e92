"""`olmorl dpo`: direct preference optimisation (dpo, dpo_norm, simpo) on preference pairs.

Before the first step the reference log-probs of every pair are computed with the starting
weights (which *are* the reference model, so no second copy is held) or read from the cache a
previous run left. Each step packs its pairs into rows, a pair's chosen and rejected sequences
side by side in one row, and takes one optimizer step on the mean loss over the step's pairs.
"""

from collections.abc import Sequence
from pathlib import Path

import torch

from olmorl.algo.packing import PackedRow, concatenate_documents, first_fit
from olmorl.algo.preference import preference_loss
from olmorl.algo.schedule import scheduled_lr
from olmorl.config import DPOConfig
from olmorl.data.checked_rows import BadRow
from olmorl.data.preference_rows import PreferencePair, load_preference_pairs
from olmorl.data.sft_rows import (
    ChatTemplateError,
    TokenizedConversation,
    conversation_document,
    tokenize_conversation,
)
from olmorl.learner.batch import PreferenceMiniBatch, shard_rows
from olmorl.train import reference_cache
from olmorl.train.batches import fixed_size_batches, plan_steps
from olmorl.train.learners import sum_over_ranks
from olmorl.train.loop import RunResult, load_splits, run_offline

PairTokens = tuple[TokenizedConversation, TokenizedConversation]
"""A pair as (chosen, rejected) token sequences; only the final reply is in each loss mask."""


def tokenize_pair(pair: PreferencePair, tokenizer) -> PairTokens:
    """Both sides rendered with the chat template, the loss mask on the final reply alone."""

    def side(messages) -> TokenizedConversation:
        ids, mask = tokenize_conversation(messages, tokenizer, max_tokens=1 << 62)
        return TokenizedConversation(ids, last_trained_run(mask))

    return side(pair.chosen_messages), side(pair.rejected_messages)


def last_trained_run(mask: Sequence[bool]) -> list[bool]:
    """Only the last run of True kept: the reply, not earlier assistant turns of the prompt."""
    out = [False] * len(mask)
    end = max((i for i, m in enumerate(mask) if m), default=-1)
    i = end
    while i >= 0 and mask[i]:
        out[i] = True
        i -= 1
    return out


def load_pair_sets(sources: list[str], tokenizer, max_tokens: int, on_bad_row: str):
    """Tokenized pairs of every source, and per source the pairs kept and rows skipped."""
    pairs: list[PairTokens] = []
    report: dict[str, dict[str, int]] = {}
    # Measuring a pair means tokenizing it; keep the tokens of the pairs that pass (by identity:
    # kept pairs stay alive, so their ids are not reused).
    tokens: dict[int, PairTokens] = {}

    def count_tokens(pair: PreferencePair) -> int:
        try:
            tokens[id(pair)] = tokenize_pair(pair, tokenizer)
        except ChatTemplateError as e:
            raise BadRow(str(e), "chat_template") from None
        return sum(len(side.input_ids) for side in tokens[id(pair)])

    for source in sources:
        kept, skipped = load_preference_pairs(source, on_bad_row, max_tokens, count_tokens)
        pairs += [tokens[id(pair)] for pair in kept]
        report[source] = {"pairs": len(kept), **{f"skipped/{k}": v for k, v in skipped.items()}}
    return pairs, report


def pack_pairs(pairs: Sequence[PairTokens], pair_ids: Sequence[int], max_tokens: int):
    """Rows holding the pairs `pair_ids` (first fit in order), chosen then rejected side by side;
    document 2p is pair p's chosen sequence and 2p + 1 its rejected one."""
    lengths = {p: sum(len(side.input_ids) for side in pairs[p]) for p in pair_ids}
    bins = first_fit(list(pair_ids), lengths, max_tokens)
    rows = []
    for members in bins:
        docs, indices = [], []
        for p in members:
            for side_index, side in enumerate(pairs[p]):
                docs.append(conversation_document(*side))
                indices.append(2 * p + side_index)
        rows.append(concatenate_documents(docs, tuple(indices)))
    return rows


def documents_logps(
    learners, rows: list[PackedRow], num_documents: int, label: str | None = None
) -> torch.Tensor:
    """Summed loss-token log-probs of every document under the learners' weights. # [D]"""
    out = torch.zeros(num_documents, dtype=torch.float64)
    for index, total, _ in learners.document_logps(rows, label):
        out[index] = total
    return out


def document_lengths(pairs: Sequence[PairTokens]) -> torch.Tensor:
    """Loss tokens of every document, 2p chosen and 2p + 1 rejected. # [D]"""
    return torch.tensor([sum(side.loss_mask) for pair in pairs for side in pair])


class DPOTrainer:
    name = "dpo"
    plot_panels = (
        ("loss", "train loss"),
        ("rewards/accuracy", "train preference accuracy"),
        ("eval/rewards/accuracy", "held-out preference accuracy"),
    )

    def __init__(self, cfg: DPOConfig):
        self.cfg = cfg
        self.train, self.held_out, self.data_report = load_splits(
            cfg, load_pair_sets, "preference pairs"
        )
        self.plan = plan_steps(
            len(self.train),
            cfg.run.seed,
            cfg.data.shuffle,
            lambda order: fixed_size_batches(order, cfg.train.pairs_per_step),
            cfg.train.epochs,
            cfg.run.steps,
        )
        self.reference = torch.zeros(2 * len(self.train), dtype=torch.float64)
        self.held_out_reference = torch.zeros(2 * len(self.held_out), dtype=torch.float64)

    def num_steps(self) -> int:
        return len(self.plan)

    def prepare(self, learners) -> dict[str, float]:
        """Reference log-probs of the training and held-out pairs, from the cache or computed
        now, while the learners still hold the starting weights."""
        if self.cfg.loss.kind == "simpo":  # reference-free
            return {}
        cache_dir = self.cfg.train.reference_cache_dir(self.cfg.run.output_dir)
        model_hash = reference_cache.model_digest(self.cfg.model)
        metrics = {"reference/forward_rows": 0.0, "reference/cache_hits": 0.0}
        for name, pairs in (("train", self.train), ("held_out", self.held_out)):
            if not pairs:
                continue
            key = reference_cache.documents_key(model_hash, [side for p in pairs for side in p])
            logps = reference_cache.load_cached(cache_dir, key)
            if logps is None or logps.numel() != 2 * len(pairs):
                rows = pack_pairs(pairs, range(len(pairs)), self.cfg.learner.micro_batch_tokens)
                logps = documents_logps(
                    learners, rows, 2 * len(pairs), f"reference log-probs ({name})"
                )
                reference_cache.store(cache_dir, key, logps)
                metrics["reference/forward_rows"] += len(rows)
            else:
                metrics["reference/cache_hits"] += 1
            setattr(self, "reference" if name == "train" else "held_out_reference", logps)
        return metrics

    def step_data(self, step: int) -> dict:
        return {"pairs": self.plan[step - 1]}

    def train_step(self, learners, step: int) -> dict[str, float]:
        pair_ids = self.plan[step - 1]
        rows = pack_pairs(self.train, pair_ids, self.cfg.learner.micro_batch_tokens)
        batches = [
            PreferenceMiniBatch(
                mb.rows,
                tuple(self.reference[list(row.trajectory_indices)].float() for row in mb.rows),
                len(pair_ids),
            )
            for mb in shard_rows(rows, learners.world_size)
        ]
        metrics = sum_over_ranks(
            learners.each("dpo_step", [(batch, self.cfg.loss) for batch in batches])
        )
        return {
            **metrics,
            "lr": scheduled_lr(self.cfg.learner, step - 1, self.num_steps()),
            "pairs": float(len(pair_ids)),
            "examples_seen": float(sum(len(b) for b in self.plan[:step])),
        }

    def evaluate(self, learners) -> dict[str, float]:
        if not self.held_out:
            return {}
        pairs = self.held_out
        rows = pack_pairs(pairs, range(len(pairs)), self.cfg.learner.micro_batch_tokens)
        logps = documents_logps(learners, rows, 2 * len(pairs))
        lengths = document_lengths(pairs)
        _, metrics = preference_loss(
            logps[0::2],
            logps[1::2],
            self.held_out_reference[0::2],
            self.held_out_reference[1::2],
            lengths[0::2],
            lengths[1::2],
            self.cfg.loss.kind,
            self.cfg.loss.beta,
            self.cfg.loss.gamma,
        )
        return {f"eval/{key}": float(value) for key, value in metrics.items()}


def run_dpo(cfg: DPOConfig, run_dir: Path, resume: bool = False) -> RunResult:
    return run_offline(DPOTrainer(cfg), cfg, run_dir, resume)

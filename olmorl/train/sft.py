"""`olmorl sft`: supervised fine-tuning on chat data, assistant tokens only, packed rows.

Each step takes conversations in the planned order up to train.tokens_per_step tokens, packs them
into rows of learner.micro_batch_tokens (positions restart per conversation, so attention never
crosses one), deals the rows to the ranks, and takes one optimizer step on the token mean over
the whole step (design §5).
"""

from pathlib import Path

from olmorl.algo.schedule import scheduled_lr
from olmorl.config import SFTConfig
from olmorl.data.sft_rows import TokenizedConversation, load_sft_examples, pack_sft_examples
from olmorl.learner.batch import shard_rows
from olmorl.train.batches import plan_steps, token_budget_batches
from olmorl.train.learners import sum_over_ranks
from olmorl.train.loop import RunResult, load_splits, run_offline


def load_sft_sets(
    sources: list[str], tokenizer, max_tokens: int, on_bad_row: str
) -> tuple[list[TokenizedConversation], dict[str, dict[str, int]]]:
    """The tokenized conversations of every source, and per source the rows kept and skipped."""
    examples: list[TokenizedConversation] = []
    report: dict[str, dict[str, int]] = {}
    for source in sources:
        part, skipped = load_sft_examples(source, tokenizer, max_tokens, on_bad_row)
        examples += part
        report[source] = {"examples": len(part), **{f"skipped/{k}": v for k, v in skipped.items()}}
    return examples, report


class SFTTrainer:
    name = "sft"
    plot_panels = (("loss", "train loss"), ("eval/loss", "held-out loss"))

    def __init__(self, cfg: SFTConfig):
        self.cfg = cfg
        self.train, self.held_out, self.data_report = load_splits(
            cfg, load_sft_sets, "conversations"
        )
        lengths = [len(example.input_ids) for example in self.train]
        self.plan = plan_steps(
            len(self.train),
            cfg.run.seed,
            cfg.data.shuffle,
            lambda order: token_budget_batches(order, lengths, cfg.train.tokens_per_step),
            cfg.train.epochs,
            cfg.run.steps,
        )

    def num_steps(self) -> int:
        return len(self.plan)

    def prepare(self, learners) -> dict[str, float]:
        return {}

    def step_data(self, step: int) -> dict:
        return {"examples": self.plan[step - 1]}

    def train_step(self, learners, step: int) -> dict[str, float]:
        indices = self.plan[step - 1]
        rows = pack_sft_examples(
            [self.train[i] for i in indices], self.cfg.learner.micro_batch_tokens
        )
        metrics = sum_over_ranks(
            learners.each("sft_step", [(mb,) for mb in shard_rows(rows, learners.world_size)])
        )
        return {
            **metrics,
            "lr": scheduled_lr(self.cfg.learner, step - 1, self.num_steps()),
            "conversations": float(len(indices)),
            "rows": float(len(rows)),
            "examples_seen": float(sum(len(b) for b in self.plan[:step])),
        }

    def evaluate(self, learners) -> dict[str, float]:
        if not self.held_out:
            return {}
        rows = pack_sft_examples(self.held_out, self.cfg.learner.micro_batch_tokens)
        loss, tokens = learners.mean_nll(rows)
        return {"eval/loss": loss, "eval/tokens": float(tokens)}


def run_sft(cfg: SFTConfig, run_dir: Path, resume: bool = False) -> RunResult:
    return run_offline(SFTTrainer(cfg), cfg, run_dir, resume)

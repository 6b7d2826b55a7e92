"""`report.md` of a flow: each stage's curves and its own held-out metric, and one held-out task
measured the same way after every stage.

The shared measurement samples each stage's checkpoint greedily with transformers on the flow's
`report_eval` rows (RL rows of the `math` verifier), in two prompt formats: plain text
("Question: ...\\nSolution:"), which a base model can follow, and the chat template, which only
SFT teaches. A chat answer must be boxed; a plain-text one is the boxed one, else the last number
before the first blank line.
"""

import json
from collections.abc import Sequence
from pathlib import Path

from olmorl.io import atomic_write_text
from olmorl.metrics_log import METRICS_NAME, read_records

OWN_METRIC = {
    "pretrain": ("eval/loss", "held-out loss"),
    "sft": ("eval/loss", "held-out loss"),
    "dpo": ("eval/rewards/accuracy", "held-out preference accuracy"),
    "rl": ("eval/reward", "held-out reward"),
}


def own_metric(kind: str, run_dir: Path) -> tuple[str, float | None, float | None]:
    """The stage's own held-out metric: its name, first and last logged values."""
    key, name = OWN_METRIC[kind]
    values = [r[key] for r in read_records(run_dir / METRICS_NAME) if key in r]
    return name, (values[0] if values else None), (values[-1] if values else None)


def held_out_accuracy(
    checkpoint: Path, rows: Sequence[dict], chat: bool, max_new_tokens: int
) -> float:
    """Share of `rows` whose greedy completion's answer the math verifier accepts."""
    return share_correct(rows, greedy_replies(checkpoint, rows, chat, max_new_tokens), chat)


def greedy_replies(
    checkpoint: Path, rows: Sequence[dict], chat: bool, max_new_tokens: int
) -> list[str]:
    """The checkpoint's greedy completion of each row's question, decoded with transformers (not
    the training stack), in the chat template or as plain text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    replies = []
    for row in rows:
        if chat:
            ids = tokenizer.apply_chat_template(
                row["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
        else:
            prompt = f"Question: {row['messages'][-1]['content']}\nSolution:"
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            out = model.generate(
                ids,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        replies.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return replies


def share_correct(rows: Sequence[dict], replies: Sequence[str], chat: bool) -> float:
    """Share of `replies` whose answer the math verifier accepts for its row's label."""
    right = sum(is_correct(row, reply, chat) for row, reply in zip(rows, replies, strict=True))
    return right / len(rows)


def is_correct(row: dict, reply: str, chat: bool) -> bool:
    """Whether the math verifier accepts `reply`'s answer for `row`'s label."""
    from verifiers.math import gold_answer, judge
    from verifiers.math_answer import extract_answer, normalize_answer

    # A chat answer must be boxed, as the prompt asks. A plain-text one may end "The answer is 5."
    # as pretraining taught; only its first paragraph counts, not the next problem the model goes
    # on to write.
    sources = ("boxed",) if chat else ("boxed", "last_number")
    answer = extract_answer(reply.split("\n\n")[0], sources)
    return (
        answer is not None
        and judge(gold_answer(row["ground_truth"]), normalize_answer(answer)) == "correct"
    )


def write_report(
    flow_dir: Path,
    stages: Sequence[tuple[str, str, Path, Path]],
    start_model: Path,
    eval_rows: Sequence[dict] = (),
    max_new_tokens: int = 48,
) -> Path:
    """Writes `flow_dir/report.md` for `stages` as (name, kind, run dir, final checkpoint), in
    order; `start_model` is the first stage's starting checkpoint (measured as "start")."""
    lines = [f"# Flow `{flow_dir.name}`", "", "## Stages", ""]
    lines += [
        "| stage | kind | own held-out metric | before | after | wall time |",
        "|---|---|---|---|---|---|",
    ]
    for name, kind, run_dir, _ in stages:
        metric, first, last = own_metric(kind, run_dir)
        seconds = json.loads((run_dir / "stage_done.json").read_text()).get("seconds")
        lines.append(
            f"| {name} | {kind} | {metric} | {_fmt(first)} | {_fmt(last)} | "
            f"{'' if seconds is None else f'{seconds:.0f} s'} |"
        )
    if eval_rows:
        lines += [
            "",
            (
                f"## Held-out accuracy after every stage ({len(eval_rows)} prompts, greedy, "
                "the `math` verifier)"
            ),
            "",
            "| after | plain-text prompt | chat prompt |",
            "|---|---|---|",
        ]
        for name, checkpoint in [("start", start_model)] + [(s[0], s[3]) for s in stages]:
            plain = held_out_accuracy(checkpoint, eval_rows, False, max_new_tokens)
            chat = held_out_accuracy(checkpoint, eval_rows, True, max_new_tokens)
            lines.append(f"| {name} | {plain:.2f} | {chat:.2f} |")
    lines += ["", "## Curves", ""]
    for name, _, run_dir, _ in stages:
        for plot in sorted(run_dir.glob("*.png")):  # the curves each trainer plots
            lines += [f"### {name}", "", f"![{name}]({plot.relative_to(flow_dir)})", ""]
    return atomic_write_text(flow_dir / "report.md", "\n".join(lines) + "\n")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"

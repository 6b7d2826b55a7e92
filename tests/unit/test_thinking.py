"""Think responses are scored on their answer only, with a tokenizer whose chat template opens
`<think>` in the generation prompt and declares the tags special tokens, as Olmo 3 Think's does."""

import asyncio
import json

import pytest

from olmorl.config import VerifiersConfig
from olmorl.data.rl_rows import validate_rl_row
from olmorl.data.thinking import opens_thinking, response_decoder
from olmorl.models.tokenizer import IM_END, build_tiny_tokenizer
from olmorl.rl.rewards import RewardWorker
from verifiers.thinking import final_answer

IFEVAL_NO_COMMA = json.dumps({"instruction_id": ["punctuation:no_comma"], "kwargs": [{}]})


@pytest.fixture(scope="module")
def think_tokenizer():
    return build_tiny_tokenizer(thinking=True)


@pytest.fixture(scope="module")
def chat_tokenizer():
    return build_tiny_tokenizer()


def rl_row(content: str, dataset: str = "ifeval", ground_truth=IFEVAL_NO_COMMA):
    return validate_rl_row(
        {
            "messages": [{"role": "user", "content": content}],
            "dataset": dataset,
            "ground_truth": ground_truth,
        }
    )


@pytest.mark.parametrize(
    ("response", "thinking", "expected"),
    [
        ("<think>a, b</think>\n  answer  ", False, "\n  answer  "),
        ("<think>x</think>draft</think> final ", False, " final "),  # the last </think> counts
        ("no thinking at all ", False, "no thinking at all "),
        ("<think>still thinking, cut off", False, None),  # it opened the block itself
        ("reasoning, cut off", True, None),  # the prompt opened it
        ("reasoning</think>the answer", True, "the answer"),
    ],
)
def test_final_answer(response: str, thinking: bool, expected: str | None) -> None:
    assert final_answer(response, thinking) == expected


def test_a_prompt_opens_thinking_however_the_template_writes_it(think_tokenizer, chat_tokenizer):
    row = rl_row("Say yes.")
    assert opens_thinking(row, think_tokenizer, "chat")
    assert not opens_thinking(row, chat_tokenizer, "chat")
    # Tags a user quotes are not the template's, and a closed block is no open one.
    assert not opens_thinking(rl_row("What does <think> mean?"), chat_tokenizer, "chat")
    assert opens_thinking(rl_row("Solve 2 + 2.\n<think>"), chat_tokenizer, "plain")
    assert not opens_thinking(rl_row("<think>\n</think>\nSolve."), chat_tokenizer, "plain")


def test_decoding_keeps_the_think_tags_and_drops_the_other_special_tokens(think_tokenizer):
    decode = response_decoder(think_tokenizer)
    ids = think_tokenizer.encode(f"a, b</think>yes{IM_END}", add_special_tokens=False)
    assert think_tokenizer.decode(ids, skip_special_tokens=True) == "a, byes"  # the tag is lost
    assert decode(ids) == "a, b</think>yes"


def score_responses(tokenizer, row, responses: list[str], names=("ifeval",)):
    """As the RL loop scores a group: decode the sampled ids, then the reward worker."""
    decode = response_decoder(tokenizer)
    thinking = opens_thinking(row, tokenizer, "chat")
    texts = [decode(tokenizer.encode(r, add_special_tokens=False)) for r in responses]
    worker = RewardWorker(VerifiersConfig(), list(names))
    try:
        return asyncio.run(worker.score_group(row.as_verifier_row(), texts, thinking))
    finally:
        worker.shutdown()


def test_a_think_response_cut_off_mid_thought_has_no_answer(think_tokenizer):
    # The reasoning alone would meet "no commas"; cut off before </think>, it is no answer.
    row = rl_row("Answer without commas.")
    scores = score_responses(
        think_tokenizer,
        row,
        [
            "I will avoid commas entirely",  # cut off while thinking
            f"Hmm, ok</think>Sure thing{IM_END}",  # comma only in the reasoning
            f"fine</think>Sure, thing{IM_END}",  # comma in the answer
        ],
    )
    assert scores.rewards == (0.0, 1.0, 0.0)
    assert scores.unscored == (False, False, False)  # a verdict, not a failure


def test_no_answer_is_a_verdict_for_every_verifier_even_an_unreachable_judge(think_tokenizer):
    # The judge is never asked: a response with no answer scores 0 whatever the judge would say,
    # and an unreachable judge cannot turn it into a masked failure.
    row = rl_row("Write a poem.", ["ifeval", "judge"], [IFEVAL_NO_COMMA, "a poem"])
    decode = response_decoder(think_tokenizer)
    worker = RewardWorker(
        VerifiersConfig(options={"judge": {"url": "http://127.0.0.1:9/v1"}}), ["ifeval", "judge"]
    )
    try:
        text = decode(think_tokenizer.encode("still thinking", add_special_tokens=False))
        scores = asyncio.run(worker.score_group(row.as_verifier_row(), [text], thinking=True))
        stats = worker.take_stats()
    finally:
        worker.shutdown()
    assert scores.rewards == (0.0,) and scores.unscored == (False,)
    assert stats["judge"].calls == 0

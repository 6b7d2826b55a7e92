"""The `judge` verifier against a scripted OpenAI-compatible server on a local port (real HTTP):
how replies are read, what the prompt holds, and how timeouts and server errors end."""

import asyncio
import time
from typing import Any

import pytest
from fake_judge import FakeJudge, chat

from verifiers import VerifierConfigError, VerifierResult, build_verifier
from verifiers.judge import parse_rating

QUESTION = {"messages": [{"role": "user", "content": "What is 6 times 7?"}]}


def score(
    judge: FakeJudge,
    response: str = "It is 42.",
    label: Any = None,
    row: dict | None = None,
    **options: Any,
) -> VerifierResult:
    async def run() -> VerifierResult:
        verifier = build_verifier("judge", {"url": judge.url, "backoff_s": 0.01, **options})
        try:
            return await verifier(response, label, QUESTION if row is None else row)
        finally:
            await verifier.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("reply", "rating"),
    [
        ('{"score": 8}', 8),
        ('```json\n{"score": 3}\n```', 3),
        ('The response is right.\n{"score": 9}\nThat is all.', 9),
        ('{"reasoning": "close", "score": "6"}', 6),
        ('{"score": 7.5}', 7.5),
        ('{"score": 1}', 1),
        ("Score: 3", 3),
        ("**Score:** 4", 4),
        ("I would give it a score of 5.", 5),
        ("Overall 7/10.", 7),
        ("<think>maybe a 2, or 3/10</think>Score: 9", 9),
        ('{   \r\r"score": 7 \t\t\t', 7),  # a structured reply cut off by max_tokens
        ("It is good.", None),
        ('{"score": 11}', None),
        ('{"score": 0}', None),
        ('{"score": true}', None),
        ('{"score": "high"}', None),
        ('{"rating": 5}', None),
        ("Score: 42", None),
        ("", None),
    ],
)
def test_parse_rating(reply: str, rating: float | None) -> None:
    assert parse_rating(reply) == rating


def test_json_rating_maps_to_unit_interval(judge: FakeJudge) -> None:
    judge.reply('{"score": 8}')
    assert score(judge) == VerifierResult(7 / 9, "judged")
    judge.reply('{"score": 10}')
    assert score(judge) == VerifierResult(1.0, "judged")
    judge.reply('{"score": 1}')
    assert score(judge) == VerifierResult(0.0, "judged")


def test_fenced_and_plain_text_ratings(judge: FakeJudge) -> None:
    judge.reply('Here you go:\n```json\n{"score": 5}\n```')
    assert score(judge) == VerifierResult(4 / 9, "judged")
    judge.reply("The response is partly right.\nScore: 3")
    assert score(judge) == VerifierResult(2 / 9, "judged")


@pytest.mark.parametrize("reply", ["I cannot rate this.", '{"score": 11}', "", None])
def test_unparseable_or_out_of_range_reply_scores_zero(judge: FakeJudge, reply: str | None) -> None:
    judge.reply(reply)
    assert score(judge) == VerifierResult(0.0, "unparseable_reply")
    assert len(judge.requests) == 1  # the same judge would answer the same again: no retry


def test_reply_that_is_not_a_chat_completion(judge: FakeJudge) -> None:
    judge.script = lambda n, body: (200, "<html>proxy error</html>", 0.0)
    assert score(judge) == VerifierResult(0.0, "bad_response")
    judge.script = lambda n, body: (200, {"choices": []}, 0.0)
    assert score(judge) == VerifierResult(0.0, "bad_response")


def test_slow_judge_times_out_after_its_retries(judge: FakeJudge) -> None:
    judge.script = lambda n, body: (200, chat('{"score": 9}'), 2.0)
    start = time.perf_counter()
    result = score(judge, timeout_s=0.2, max_retries=2, backoff_s=0.05)
    elapsed = time.perf_counter() - start
    assert result == VerifierResult(0.0, "judge_timeout", transient=True)
    assert len(judge.requests) == 3
    # 3 tries of 0.2 s and waits of 0.05 + 0.1 s: 0.75 s; without the timeout, 3 × 2 s.
    assert 0.7 < elapsed < 3.0


def test_server_error_is_retried(judge: FakeJudge) -> None:
    judge.script = lambda n, body: (500, {"error": "busy"}, 0.0) if n == 1 else (
        200, chat('{"score": 4}'), 0.0
    )  # fmt: skip
    assert score(judge) == VerifierResult(3 / 9, "judged")
    assert len(judge.requests) == 2


def test_persistent_server_error_scores_zero_with_the_status(judge: FakeJudge) -> None:
    judge.script = lambda n, body: (503, {"error": "down"}, 0.0)
    assert score(judge, max_retries=2) == VerifierResult(0.0, "http_503", transient=True)
    assert len(judge.requests) == 3


def test_client_error_is_not_retried(judge: FakeJudge) -> None:
    judge.script = lambda n, body: (400, {"error": "prompt too long"}, 0.0)
    assert score(judge) == VerifierResult(0.0, "http_400")
    assert len(judge.requests) == 1


def test_unreachable_judge() -> None:
    fake = FakeJudge()
    fake.server.shutdown()
    fake.server.server_close()  # nothing listens on the port now
    assert score(fake, max_retries=1) == VerifierResult(0.0, "judge_unreachable", transient=True)


def test_reference_based_prompt(judge: FakeJudge) -> None:
    score(judge, "It is 42.", "forty-two")
    score(judge, "It is 42.", {"reference": "forty-two"})
    for number in (0, 1):
        prompt = judge.prompt(number)
        assert "forty-two" in prompt and "reference" in prompt.lower()
        assert "What is 6 times 7?" in prompt and "It is 42." in prompt


@pytest.mark.parametrize("label", [None, "", "  ", {}, {"reference": ""}])
def test_reference_free_prompt(judge: FakeJudge, label: Any) -> None:
    assert score(judge, "It is 42.", label) == VerifierResult(1.0, "judged")
    prompt = judge.prompt()
    assert "reference" not in prompt.lower()
    assert "What is 6 times 7?" in prompt and "It is 42." in prompt


def test_prompt_takes_the_last_user_message(judge: FakeJudge) -> None:
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": [{"type": "text", "text": "Second question"}]},
        ]
    }
    score(judge, row=row)
    score(judge, row={})  # no messages: the prompt has only the response
    assert "Second question" in judge.prompt(0) and "First question" not in judge.prompt(0)
    assert "question" not in judge.prompt(1)


def test_policy_thinking_is_not_sent(judge: FakeJudge) -> None:
    response = "<think>secret plan, then revise</think>\nThe answer is 42."
    assert score(judge, response).reason == "judged"
    assert "secret plan" not in judge.prompt() and "The answer is 42." in judge.prompt()
    # Thinking cut off before it closed: no answer, nothing sent.
    assert score(judge, "<think>still going") == VerifierResult(0.0, "empty_response")
    assert len(judge.requests) == 1


def test_bad_label(judge: FakeJudge) -> None:
    assert score(judge, label=["a", "b"]) == VerifierResult(0.0, "bad_label")
    assert not judge.requests


def test_request_body(judge: FakeJudge) -> None:
    score(judge, model="my-judge", max_tokens=32, temperature=0.5)
    score(judge, structured_output=True)
    plain, structured = judge.requests[0][1], judge.requests[1][1]
    assert plain["model"] == "my-judge" and plain["max_tokens"] == 32
    assert plain["temperature"] == 0.5 and "response_format" not in plain
    schema = structured["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["score"]
    assert schema["properties"]["score"]["enum"] == list(range(1, 11))


def test_api_key_from_env_is_sent_as_bearer(
    judge: FakeJudge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test-123")
    monkeypatch.delenv("OLMORL_JUDGE_API_KEY", raising=False)
    score(judge, api_key_env="MY_JUDGE_KEY")
    score(judge)  # the default variable is unset: no header
    assert judge.requests[0][0]["Authorization"] == "Bearer sk-test-123"
    assert "Authorization" not in judge.requests[1][0]


def test_one_instance_serves_several_event_loops(judge: FakeJudge) -> None:
    verifier = build_verifier("judge", {"url": judge.url})

    async def many() -> list[VerifierResult]:
        return await asyncio.gather(*(verifier(f"answer {i}", None, {}) for i in range(6)))

    try:
        assert asyncio.run(many()) == [VerifierResult(1.0, "judged")] * 6
        assert asyncio.run(many()) == [VerifierResult(1.0, "judged")] * 6  # a new event loop
    finally:
        verifier.close()


def test_config_checks() -> None:
    verifier = build_verifier("judge")  # no url: fine to build, for listing and option checks
    with pytest.raises(ValueError, match="url"):
        asyncio.run(verifier("x", None, {}))
    for options in ({"url": "127.0.0.1:8000"}, {"timeout_s": 0}, {"max_retries": -1}):
        with pytest.raises(VerifierConfigError):
            build_verifier("judge", options)


def test_extra_body_fields_reach_the_server(judge: FakeJudge) -> None:
    extra = {"chat_template_kwargs": {"enable_thinking": False}}
    assert score(judge, extra_body=extra).reason == "judged"
    assert judge.requests[0][1]["chat_template_kwargs"] == {"enable_thinking": False}

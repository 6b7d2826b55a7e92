"""The `judge` verifier against a real vLLM server: `JudgeServer` as a Ray actor serving the tiny
model. Its random weights make it a useless judge, but with `structured_output` vLLM constrains it
to valid {"score": n} replies, so every call ends "judged"."""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from verifiers import VerifierResult, build_verifier
from verifiers.judge import RATING_RESPONSE_FORMAT, judge_messages

pytestmark = pytest.mark.integration

QUESTION = {"messages": [{"role": "user", "content": "What is 6 times 7?"}]}
CASES = [
    ("The answer is 42.", "42"),
    ("<think>6 * 7 = 42</think>It is 42.", {"reference": "42"}),
    ("I think it is 48.", None),
    ("Forty-two.", ""),
]


@pytest.fixture(scope="module")
def judge_url(ray_cluster, tiny_model_dir: Path) -> Iterator[str]:
    import ray

    from olmorl.rollout.judge_server import JudgeServer

    server = ray.remote(JudgeServer).remote(
        str(tiny_model_dir),
        dtype="float32",
        max_model_len=1024,
        extra_args=["--enforce-eager", "--seed", "0"],
        startup_timeout_s=180,
    )
    start = time.perf_counter()
    url = ray.get(server.start.remote())
    print(f"\njudge server up at {url} in {time.perf_counter() - start:.1f} s")
    yield url
    ray.get(server.shutdown.remote())
    ray.kill(server)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url.removesuffix("/v1") + "/health", timeout=5)


def score_all(url: str, **options) -> list[VerifierResult]:
    async def run() -> list[VerifierResult]:
        verifier = build_verifier("judge", {"url": url, "timeout_s": 60.0, **options})
        try:
            return await asyncio.gather(
                *(verifier(response, label, QUESTION) for response, label in CASES)
            )
        finally:
            await verifier.aclose()

    return asyncio.run(run())


def test_structured_output_gives_a_rating(judge_url: str) -> None:
    results = score_all(judge_url, structured_output=True, max_tokens=16)
    print(results)
    for result in results:
        assert result.reason == "judged"
        assert 0.0 <= result.score <= 1.0


def test_structured_reply_is_complete_json(judge_url: str) -> None:
    # The server disables free whitespace in constrained JSON; without it the random model pads
    # the object with whitespace until max_tokens cuts it off.
    body = {
        "model": "judge",
        "messages": judge_messages("It is 42.", "42", None),
        "max_tokens": 16,
        "temperature": 0.0,
        "response_format": RATING_RESPONSE_FORMAT,
    }
    reply = httpx.post(f"{judge_url}/chat/completions", json=body, timeout=60).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert json.loads(choice["message"]["content"])["score"] in range(1, 11)


def test_free_text_reply_round_trip(judge_url: str) -> None:
    # Unconstrained, the random model rarely writes a rating; the request must still succeed.
    results = score_all(judge_url, max_tokens=16)
    print(results)
    for result in results:
        assert result.reason in ("judged", "unparseable_reply")

"""The `judge` verifier: an LLM behind an OpenAI-compatible API rates the response from 1 to 10.

With a reference answer in the label (a non-empty string, or a dict with "reference") the judge
compares the response to it; without one (None, "") it rates the response on its own. The prompt
carries the conversation's last user message when the row has `messages`. The policy's thinking
(everything up to the last `</think>`) is never sent. A rating s maps to the score (s - 1) / 9.

Failures do not raise: a reply with no rating in [1, 10] scores 0 as "unparseable_reply"; timeouts,
refused connections and HTTP 5xx/429 are retried with exponential backoff and then score 0 as
"judge_timeout", "judge_unreachable" or "http_<code>". Only a missing `url` raises, at call time.
"""

import asyncio
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from verifiers.base import Verifier, VerifierResult
from verifiers.registry import register
from verifiers.thinking import final_answer

MIN_RATING, MAX_RATING = 1, 10
# Worth another try: the server is overloaded or restarting. Other 4xx are our request's fault.
_RETRY_STATUS = {408, 409, 429}
# Failures of the endpoint rather than verdicts on the response.
_TRANSIENT_REASONS = {"judge_timeout", "judge_unreachable"} | {f"http_{s}" for s in _RETRY_STATUS}

_SYSTEM_PROMPT = (
    "You are an impartial grader. You rate how well an AI assistant's response answers the "
    "user's request, on a scale of 1 (useless or wrong) to 10 (fully correct, complete and "
    "helpful). Ignore the response's length and style unless they hurt its usefulness."
)
_REPLY_FORMAT = (
    'Reply with only a JSON object of the form {"score": <integer from 1 to 10>} and nothing else.'
)
_REFERENCE_INSTRUCTION = (
    "Rate the response below. A reference answer is given: judge the response's correctness "
    "against it; a response that reaches the same final answer by another valid route is correct."
)
_FREE_INSTRUCTION = "Rate the response below on its correctness, completeness and helpfulness."

# The rating as JSON (bare, in a ```json fence or amid text), or "Score: 7", or "7/10".
_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_BRACES = re.compile(r"\{[^{}]*\}")
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_SCORE_WORD = re.compile(r"\bscore\b(?:\s+of)?[\s*:=\"']*" + _NUMBER, re.IGNORECASE)
_OUT_OF_TEN = re.compile(_NUMBER + r"\s*/\s*10\b")


@register("judge")
class JudgeVerifier(Verifier):
    @dataclass(frozen=True)
    class Config(Verifier.Config):
        url: str = ""
        """Base URL of an OpenAI-compatible API, e.g. "http://127.0.0.1:8000/v1"; required."""
        model: str = "judge"
        """Model name sent in each request (the server's `--served-model-name`)."""
        timeout_s: float = 60.0
        """Limit on one request, from sending to the whole reply; past it the request is retried."""
        max_retries: int = 3
        """Further tries after a timeout, a refused connection or an HTTP 5xx/408/409/429."""
        backoff_s: float = 1.0
        """Wait before the first retry; doubled before each next one."""
        max_tokens: int = 512
        """Reply length limit; a reasoning judge needs more than a JSON object."""
        temperature: float = 0.0
        """Sampling temperature of the judge."""
        api_key_env: str = "OLMORL_JUDGE_API_KEY"
        """Environment variable holding the API key, sent as a Bearer token; unset: none sent."""
        extra_body: dict[str, Any] = field(default_factory=dict)
        """Further request fields, e.g. `{chat_template_kwargs: {enable_thinking: false}}` for a
        Qwen3 judge with thinking off, as Olmo 3 used."""
        structured_output: bool = False
        """Ask for a reply following a JSON schema (`response_format`), so that even a weak judge
        answers {"score": n}; needs a server with structured outputs (vLLM, OpenAI)."""

        def __post_init__(self) -> None:
            # An empty url is allowed so that `build_verifier("judge")` works for listing and
            # checking options; a call without one raises.
            if self.url and not self.url.startswith(("http://", "https://")):
                raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
            for name in ("timeout_s", "max_tokens"):
                if getattr(self, name) <= 0:
                    raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
            for name in ("max_retries", "backoff_s", "temperature"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    config: Config

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        # One client per event loop: pooled connections belong to the loop that opened them, and a
        # caller may score with asyncio.run() more than once. Normally that is one client.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None  # httpx.AsyncClient

    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        if not self.config.url:
            raise ValueError(
                "verifier 'judge' needs the option url (an OpenAI-compatible base URL, "
                "e.g. http://127.0.0.1:8000/v1)"
            )
        answer = (final_answer(response) or "").strip()
        if not answer:
            return VerifierResult(0.0, "empty_response")
        try:
            reference = reference_answer(label)
        except TypeError:
            return VerifierResult(0.0, "bad_label")
        messages = judge_messages(answer, reference, last_user_message(row))
        reply, reason = await self._complete(messages)
        if reply is None:
            # A judge that was down or slow may answer next time: not a verdict to cache.
            return VerifierResult(
                0.0,
                reason,
                transient=reason in _TRANSIENT_REASONS or reason.startswith("http_5"),
            )
        rating = parse_rating(reply)
        if rating is None:
            return VerifierResult(0.0, "unparseable_reply")
        return VerifierResult((rating - MIN_RATING) / (MAX_RATING - MIN_RATING), "judged")

    async def _complete(self, messages: list[dict[str, str]]) -> tuple[str | None, str]:
        """The judge's reply text, or None and the reason it could not be had."""
        import httpx

        body: dict[str, Any] = {
            **self.config.extra_body,
            "model": self.config.model,
            "messages": messages,
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
        }
        if self.config.structured_output:
            body["response_format"] = RATING_RESPONSE_FORMAT
        client = self._client_for_this_loop()
        delay = self.config.backoff_s
        reason = "judge_unreachable"
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                reply = await asyncio.wait_for(
                    client.post("/chat/completions", json=body), self.config.timeout_s
                )
            except (TimeoutError, httpx.TimeoutException):
                reason = "judge_timeout"
                continue
            except httpx.RequestError:  # refused, reset, DNS, protocol errors
                reason = "judge_unreachable"
                continue
            if reply.status_code != 200:
                reason = f"http_{reply.status_code}"
                if reply.status_code >= 500 or reply.status_code in _RETRY_STATUS:
                    continue
                return None, reason
            try:
                return _reply_text(reply.json()), "ok"
            except (ValueError, LookupError, TypeError):
                return None, "bad_response"
        return None, reason

    def _client_for_this_loop(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()
            headers = {}
            key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
            if key:
                headers["Authorization"] = f"Bearer {key}"
            self._client = httpx.AsyncClient(
                base_url=self.config.url.rstrip("/"),
                headers=headers,
                # The whole-request limit is the asyncio.wait_for in _complete.
                timeout=httpx.Timeout(None),
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """`close` for a caller on the event loop that made the calls."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is None or loop is None or loop.is_closed():
            return  # a closed loop's connections cannot be shut down politely; the OS does it
        if loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                loop.create_task(client.aclose())
            else:
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        else:
            loop.run_until_complete(client.aclose())


RATING_RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "rating",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "score": {"type": "integer", "enum": list(range(MIN_RATING, MAX_RATING + 1))}
            },
            "required": ["score"],
            "additionalProperties": False,
        },
    },
}


def reference_answer(label: Any) -> str | None:
    """The label's reference answer, or None for a reference-free judgement."""
    if isinstance(label, Mapping):
        label = label.get("reference")
    if label is None:
        return None
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise TypeError(f"a judge label is a string, a dict with 'reference' or None: {label!r}")
    text = str(label).strip()
    return text or None


def last_user_message(row: Mapping[str, Any]) -> str | None:
    """The text of the last user turn in `row["messages"]`, if there is one."""
    messages = row.get("messages")
    if not isinstance(messages, (list, tuple)):
        return None
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # OpenAI content parts
                content = "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping))
            return content if isinstance(content, str) and content.strip() else None
    return None


def judge_messages(answer: str, reference: str | None, request: str | None) -> list[dict]:
    """The chat sent to the judge."""
    parts = [_REFERENCE_INSTRUCTION if reference is not None else _FREE_INSTRUCTION]
    if request is not None:
        parts.append(f"[User request]\n{request.strip()}")
    if reference is not None:
        parts.append(f"[Reference answer]\n{reference}")
    parts.append(f"[Response]\n{answer}")
    parts.append(_REPLY_FORMAT)
    return [
        {"role": "system", "content": _SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def parse_rating(reply: str) -> float | None:
    """The judge's 1-10 rating in its reply, or None when there is none in range."""
    text = (final_answer(reply) or "").strip()
    candidates = [text, *_FENCE.findall(text), *reversed(_BRACES.findall(text))]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and "score" in data:
            return _in_range(data["score"])
    for pattern in (_SCORE_WORD, _OUT_OF_TEN):
        matches = pattern.findall(text)
        if matches:
            return _in_range(matches[-1])
    return None


def _in_range(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if MIN_RATING <= value <= MAX_RATING else None


def _reply_text(data: Any) -> str:
    content = data["choices"][0]["message"]["content"]
    if content is None:  # e.g. a reasoning parser took the whole (cut-off) reply
        return ""
    if not isinstance(content, str):
        raise TypeError(f"message content is not a string: {content!r}")
    return content

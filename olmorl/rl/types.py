"""Messages between the RL loop's actors: frozen, documented, carrying the policy version."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """One training prompt, ready for the engines and the verifiers."""

    token_ids: list[int]
    """The prompt after the chat template (or plain format), tokenized."""
    row: dict
    """The data row the verifiers see (messages, ground_truth, dataset and extra fields)."""
    thinking: bool = False
    """The prompt opened a think block (a Think chat template): the verifiers score only the
    text after `</think>`, and a response without one has no answer."""


@dataclass(frozen=True)
class Completion:
    """One sampled response."""

    token_ids: tuple[int, ...]
    """Generated token ids, the stop token included when generation ended on it."""
    logprobs: tuple[float, ...]
    """vLLM's logprob of each generated token, of the temperature-processed distribution."""
    finish_reason: str
    """`stop` (end of turn or text), `length` (hit the response limit) or `abort` (cut off by an
    `abort` weight update; such a response is never trained on)."""
    token_versions: tuple[int, ...]
    """Policy version of the weights that sampled each token; a response that spanned an
    in-flight weight update has several."""

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def oldest_version(self) -> int | None:
        """Version of its first token, the stalest; None for an empty response."""
        return self.token_versions[0] if self.token_versions else None


@dataclass(frozen=True)
class PromptGroup:
    """The `group_size` responses to one prompt."""

    prompt_index: int
    """Position of the prompt in the training data."""
    prompt_ids: tuple[int, ...]
    """The prompt's token ids after the chat template."""
    completions: tuple[Completion, ...]
    """The sampled responses."""


@dataclass(frozen=True)
class GroupScores:
    """A reward worker's verdicts on one prompt's responses, one entry per response."""

    rewards: tuple[float, ...]
    """Each response's reward (weighted sum over the row's verifiers)."""
    verifier_scores: dict[str, tuple[float, ...]]
    """Per verifier, each response's score, for per-verifier reward curves."""
    pass_rates: tuple[float, ...]
    """Each response's mean unweighted verifier score, in [0, 1] however many verifiers the row
    names (what `algo.pass_rate_exclusion` compares)."""
    unscored: tuple[bool, ...]
    """True where a verifier failed for a reason that is not the response's (a timeout of the
    call, a crash, an unreachable judge): its reward is no verdict and it is never trained on."""


@dataclass(frozen=True)
class ScoredGroup:
    """A group with the verifiers' rewards, one per completion."""

    group: PromptGroup
    """The prompt and its responses."""
    rewards: tuple[float, ...]
    """Each response's reward (weighted sum over the row's verifiers)."""
    verifier_scores: dict[str, tuple[float, ...]]
    """Per verifier, each response's score, for per-verifier reward curves."""
    unscored: tuple[bool, ...] = ()
    """As `GroupScores.unscored`; empty when every response was scored."""

    @property
    def scored(self) -> tuple[bool, ...]:
        """Per response, whether its reward is a verdict (trained on, counted in reward means)."""
        return tuple(not u for u in self.unscored) or (True,) * len(self.rewards)

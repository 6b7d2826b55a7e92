"""The verifier registry (lookup, option checks, entry-point plugins), row scoring with several
verifiers per row, and the `contains` verifier."""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from verifiers import (
    RowScore,
    UnknownVerifierError,
    Verifier,
    VerifierConfigError,
    VerifierLoadError,
    VerifierResult,
    available_verifiers,
    build_verifier,
    get_verifier_class,
    register,
    registry,
    score_row,
)
from verifiers.contains import ContainsVerifier
from verifiers.math import MathVerifier


class EchoVerifier(Verifier):
    """Scores 1 when the response equals the label; a stand-in third-party verifier."""

    @dataclass(frozen=True)
    class Config(Verifier.Config):
        strip: bool = False
        """Compare after stripping whitespace."""
        suffix: str | None = None
        """Appended to the label before comparing."""

    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        if self.config.strip:
            response = response.strip()
        label += self.config.suffix or ""
        return VerifierResult(
            float(response == label), "correct" if response == label else "wrong_answer"
        )


class LabelScore(Verifier):
    """Returns its label as the score: lets scoring tests set each verifier's score directly."""

    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        return VerifierResult(float(label), f"label={label}")


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    target: Any
    loads: int = 0

    def load(self) -> Any:
        self.loads += 1
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    """The entry points the registry will see; registrations made by a test are undone after it."""
    installed: list[FakeEntryPoint] = []
    monkeypatch.setattr(registry, "_classes", dict(registry._classes))
    monkeypatch.setattr(registry, "_plugins", None)
    monkeypatch.setattr(
        registry, "entry_points", lambda group: installed if group == "olmorl.verifiers" else []
    )
    return installed


# ---- lookup ----


def test_builtins_are_found_by_name() -> None:
    assert {"contains", "math"} <= set(available_verifiers())
    assert get_verifier_class("math") is MathVerifier
    assert get_verifier_class("contains") is ContainsVerifier
    assert MathVerifier.name == "math"


def test_unknown_name_lists_the_known_ones_and_suggests_the_closest() -> None:
    with pytest.raises(UnknownVerifierError) as info:
        get_verifier_class("maht")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "'maht'" in message and "contains" in message and "did you mean 'math'?" in message


def test_register_refuses_a_taken_name_and_non_verifiers(plugins: list[FakeEntryPoint]) -> None:
    with pytest.raises(ValueError, match="'math' is taken by verifiers.math.MathVerifier"):
        register("math")(EchoVerifier)
    with pytest.raises(TypeError, match="Verifier subclass"):
        register("thing")(dict)  # type: ignore[type-var]


# ---- options ----


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 3}, r"verifier 'math': unknown option 'timeout' .*did you mean 'timeout_s'\?"),
        ({"timeout_s": "5"}, r"verifier 'math': option 'timeout_s' must be float, got '5'"),
        ({"timeout_s": True}, r"option 'timeout_s' must be float, got True"),
        ({"answer_sources": "boxed"}, r"option 'answer_sources' must be a list"),
        ({"answer_sources": ["boxed", 3]}, r"option 'answer_sources' must be one of .*got 3"),
    ],
)
def test_bad_options_fail_in_one_line_naming_the_key(options: dict, message: str) -> None:
    with pytest.raises(VerifierConfigError, match=message) as info:
        build_verifier("math", options)
    assert "\n" not in str(info.value)


def test_a_verifier_without_options_refuses_any() -> None:
    with pytest.raises(VerifierConfigError, match="unknown option 'x' \\(options: none\\)"):
        build_verifier("contains", {"x": 1})
    assert isinstance(build_verifier("contains", None), ContainsVerifier)


def test_a_config_of_another_verifier_is_refused() -> None:
    with pytest.raises(
        TypeError, match="EchoVerifier takes a EchoVerifier.Config, got a MathVerifier.Config"
    ):
        EchoVerifier(MathVerifier.Config())  # type: ignore[arg-type]


# ---- entry-point plugins ----


def test_entry_point_plugins_are_listed_then_loaded_once(plugins: list[FakeEntryPoint]) -> None:
    echo = FakeEntryPoint("echo", "acme.verifiers:EchoVerifier", EchoVerifier)
    plugins.append(echo)
    assert "echo" in available_verifiers()
    assert echo.loads == 0  # listing does not import third-party code
    assert get_verifier_class("echo") is EchoVerifier
    assert get_verifier_class("echo") is EchoVerifier
    assert echo.loads == 1
    v = build_verifier("echo", {"strip": True})
    assert asyncio.run(v(" hi ", "hi", {})) == VerifierResult(1.0, "correct")
    with pytest.raises(
        VerifierConfigError, match="verifier 'echo': unknown option 'strp'.*'strip'"
    ):
        build_verifier("echo", {"strp": True})
    assert asyncio.run(build_verifier("echo", {"suffix": "!"})("hi!", "hi", {})).score == 1.0
    assert build_verifier("echo", {"suffix": None}).config.suffix is None
    with pytest.raises(VerifierConfigError, match=r"option 'suffix' must be str \| None, got 3"):
        build_verifier("echo", {"suffix": 3})


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            ImportError("No module named 'acme'"),
            "'broken' \\(acme.verifiers:Bad\\) failed to load: ImportError",
        ),
        (dict, "'broken' \\(acme.verifiers:Bad\\) is not a Verifier subclass"),
    ],
)
def test_a_bad_entry_point_is_named(
    plugins: list[FakeEntryPoint], target: Any, message: str
) -> None:
    plugins.append(FakeEntryPoint("broken", "acme.verifiers:Bad", target))
    with pytest.raises(VerifierLoadError, match=message):
        get_verifier_class("broken")


def test_a_builtin_wins_over_an_entry_point_of_the_same_name(plugins: list[FakeEntryPoint]) -> None:
    shadow = FakeEntryPoint("math", "acme.verifiers:EchoVerifier", EchoVerifier)
    plugins.append(shadow)
    assert get_verifier_class("math") is MathVerifier
    assert shadow.loads == 0


# ---- scoring rows ----

SCORERS = {"a": LabelScore(), "b": LabelScore(), "c": LabelScore()}


def score(row: dict, weights: dict | None = None) -> RowScore:
    return asyncio.run(score_row(row, "response", SCORERS, weights))


def test_one_verifier() -> None:
    result = score({"dataset": "a", "ground_truth": "0.5"})
    assert result == RowScore(0.5, {"a": 0.5}, {"a": "label=0.5"})


def test_a_single_label_in_a_list_is_unwrapped() -> None:
    assert score({"dataset": "a", "ground_truth": ["1"]}).per_verifier == {"a": 1.0}


def test_lists_pair_up_and_the_scores_sum() -> None:
    result = score({"dataset": ["a", "b", "c"], "ground_truth": ["1", "0", "0.5"]})
    assert result.score == 1.5
    assert result.per_verifier == {"a": 1.0, "b": 0.0, "c": 0.5}


def test_a_single_label_is_shared_by_all_verifiers() -> None:
    result = score({"dataset": ("a", "b"), "ground_truth": "0.25"})
    assert result.per_verifier == {"a": 0.25, "b": 0.25}
    assert result.score == 0.5


def test_weights_scale_each_verifier_default_one() -> None:
    result = score({"dataset": ["a", "b"], "ground_truth": ["1", "1"]}, weights={"a": 0.5})
    assert result.score == 1.5  # 0.5 * 1 + 1 * 1
    assert result.per_verifier == {"a": 1.0, "b": 1.0}  # unweighted


def test_a_verifier_named_twice_keeps_both_scores() -> None:
    result = score({"dataset": ["a", "a"], "ground_truth": ["1", "0.5"]})
    assert result.per_verifier == {"a": 1.0, "a#2": 0.5}
    assert result.score == 1.5


def test_label_count_must_match_verifier_count() -> None:
    with pytest.raises(ValueError, match="2 labels for 3 verifiers"):
        score({"dataset": ["a", "b", "c"], "ground_truth": ["1", "0"]})


def test_a_verifier_that_was_not_built_is_named() -> None:
    with pytest.raises(UnknownVerifierError, match="'bb', which was not built.*did you mean 'b'"):
        score({"dataset": ["a", "bb"], "ground_truth": "1"})


def test_real_verifiers_in_one_row() -> None:
    math = build_verifier("math")
    verifiers = {"math": math, "contains": build_verifier("contains")}
    row = {"dataset": ["math", "contains"], "ground_truth": ["4", "t3"]}
    try:
        result = asyncio.run(score_row(row, r"I say t3: \boxed{4}", verifiers))
        assert result == RowScore(
            2.0, {"math": 1.0, "contains": 1.0}, {"math": "correct", "contains": "correct"}
        )
        result = asyncio.run(score_row(row, r"I say t30: \boxed{5}", verifiers))
        assert result.score == 0.0 and result.reasons == {
            "math": "wrong_answer",
            "contains": "wrong_answer",
        }
    finally:
        math.close()


# ---- the contains verifier ----


@pytest.mark.parametrize(
    ("response", "label", "expected"),
    [
        ("t17", "t17", 1.0),
        ("I will write t17.", "t17", 1.0),
        ("(t17)", "t17", 1.0),
        ("t3 t17\nt9", "t17", 1.0),
        ("x_t17_y", "t17", 1.0),
        ("t170", "t17", 0.0),
        ("at17", "t17", 0.0),
        ("T17", "t17", 0.0),
        ("", "t17", 0.0),
        ("say a.b now", "a.b", 1.0),
    ],
)
def test_contains_whole_word(response: str, label: str, expected: float) -> None:
    result = asyncio.run(ContainsVerifier()(response, label, {}))
    assert result.score == expected


def test_contains_needs_a_word() -> None:
    with pytest.raises(ValueError, match="non-empty word"):
        asyncio.run(ContainsVerifier()("anything", " ", {}))


@pytest.mark.parametrize(
    ("response", "expected", "reason"),
    [
        ("t1", 1.0, "correct"),
        ("t1 t2", 0.0, "forbidden_word"),
        ("t0t1 t3", 0.0, "forbidden_word"),
        ("t2x", 0.0, "wrong_answer"),
    ],
)
def test_contains_refuses_forbidden_words(response: str, expected: float, reason: str) -> None:
    row = {"forbidden_words": ["t0", "t2", "t3"]}
    result = asyncio.run(ContainsVerifier()(response, "t1", row))
    assert (result.score, result.reason) == (expected, reason)


def test_coin_is_deterministic_and_lands_heads_at_about_p() -> None:
    coin = build_verifier("coin", {"p": 0.25})
    scores = [asyncio.run(coin(f"response {i}", "x", {})).score for i in range(2000)]
    assert scores == [asyncio.run(coin(f"response {i}", "x", {})).score for i in range(2000)]
    assert 0.2 < sum(scores) / len(scores) < 0.3

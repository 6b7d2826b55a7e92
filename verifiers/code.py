"""The `code` and `code_stdio` verifiers: run the response's last Python block against tests.

`code` labels are assert-style tests, run after the program with the values it computes compared
outside its sandbox (code_plan, code_harness); a test of a shape that cannot be split fails, and
the result's reason is then "unsupported_test". `code_stdio` labels are {"input", "output"} pairs,
the program reading the input and its stripped stdout lines compared to the output's. Either may
come as a JSON string. Every test runs in its own sandbox (sandbox.py); the score is the fraction
passed, or 0/1 with `all_or_nothing`.
"""

import asyncio
import base64
import io
import os
import pickle
import re
import secrets
import zlib
from abc import abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from verifiers.base import Verifier, VerifierResult
from verifiers.code_harness import (
    checks_source,
    program_source,
    program_stdin,
    quick_check,
    read_checks,
    read_values,
)
from verifiers.code_plan import Plan, Unsupported, plan
from verifiers.labels import decoded_label
from verifiers.registry import register
from verifiers.sandbox import SandboxLimits, SandboxResult, run_python
from verifiers.sandbox_probe import host_isolation

# A fence, its info string (language tag) and its body; an unclosed fence (a cut-off response) is
# no block at all.
_FENCE = re.compile(r"```([^\n`]*)\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = {"", "python", "python3", "py"}
Verdict = Literal["pass", "fail", "unsupported"]


class _CodeVerifier(Verifier):
    @dataclass(frozen=True)
    class Config(Verifier.Config):
        all_or_nothing: bool = False
        """Score 1 only when every test passes, else 0; by default the fraction passed."""
        timeout_s: float = 5.0
        """Wall-clock (and CPU) limit on one test's run; past it the test fails."""
        memory_mb: int = 512
        """Memory one test's sandbox may hold, all its processes together, in MiB (see
        `SandboxLimits.memory_mb`)."""
        parallel_runs: int = 0
        """Sandboxes running at once in this process; 0 means one per CPU core."""

        def __post_init__(self) -> None:
            if self.parallel_runs < 0:
                raise ValueError(f"parallel_runs must be >= 0, got {self.parallel_runs}")
            if self.timeout_s <= 0:
                raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
            if self.memory_mb <= 0:
                raise ValueError(f"memory_mb must be positive, got {self.memory_mb}")

    config: Config

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        # The pool bounds sandboxes, not rows: every test of every response queues here, so the
        # machine runs as many programs as it has cores however many rows are being scored.
        self._pool = ThreadPoolExecutor(
            max_workers=self.config.parallel_runs or os.cpu_count() or 1,
            thread_name_prefix=f"{type(self).__name__}-sandbox",
        )

    @classmethod
    def check_host(cls) -> str:
        # SandboxUnavailable says what each way of making a sandbox met.
        return f"{cls.name}: model-written code runs in {host_isolation()} sandboxes"

    async def __call__(self, response: str, label: Any, row: Mapping[str, Any]) -> VerifierResult:
        program = last_python_block(response)
        if program is None:
            return VerifierResult(0.0, "no_code")
        tests = self.parse_tests(label)
        if not tests:
            return VerifierResult(0.0, "bad_label")
        limits = SandboxLimits(
            cpu_s=max(1, round(self.config.timeout_s)),
            wall_s=self.config.timeout_s,
            memory_mb=self.config.memory_mb,
        )
        # Threads, so that the event loop keeps serving other rows while the sandboxes run.
        loop = asyncio.get_running_loop()
        verdicts = await asyncio.gather(
            *(
                loop.run_in_executor(self._pool, self.run_test, program, test, limits)
                for test in tests
            )
        )
        fraction = verdicts.count("pass") / len(verdicts)
        if self.config.all_or_nothing:
            fraction = float(fraction == 1.0)
        if "unsupported" in verdicts:
            return VerifierResult(fraction, "unsupported_test")
        return VerifierResult(fraction, "all_passed" if fraction == 1.0 else "some_failed")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    @abstractmethod
    def parse_tests(label: Any) -> list | None:
        """The label's tests, or None when it is not of this verifier's shape."""

    @staticmethod
    @abstractmethod
    def run_test(program: str, test: Any, limits: SandboxLimits) -> Verdict:
        """Whether `program` passes `test`, run in a fresh sandbox."""


@register("code")
class CodeVerifier(_CodeVerifier):
    @staticmethod
    def parse_tests(label: Any) -> list[str] | None:
        # Decoded first: a base64 blob of compressed tests can also parse as a Python expression.
        tests = _load(label)
        if isinstance(tests, (list, tuple)) and all(
            isinstance(t, str) and t.strip() for t in tests
        ):
            return tests
        if isinstance(label, str) and _is_python(label):
            # A one-test list reaches us unwrapped: a row naming one verifier has its one-element
            # ground_truth list taken as the label itself (scoring.pair_labels).
            return [label]
        return None

    @staticmethod
    def run_test(program: str, test: str, limits: SandboxLimits) -> Verdict:
        try:
            split = plan(program, test)
        except Unsupported:
            return "unsupported"
        except Exception:  # noqa: BLE001 - a program or test that cannot be parsed here fails
            return "fail"
        return "pass" if _passes(program, split, limits) else "fail"


def _passes(program: str, split: Plan, limits: SandboxLimits) -> bool:
    # The harness writes it only after the test's last step: a program that leaves early
    # (sys.exit, os._exit) sends none.
    token = secrets.token_hex(16)
    stdin = program_stdin(token, split.steps)
    result = run_python(program_source(program), stdin=stdin, limits=limits)
    reported = read_values(result.stdout, token, len(split.links)) if _clean_exit(result) else None
    if reported is None:
        return False
    values = [value for _, value in reported]
    try:
        setup, checks = split.finish([count for count, _ in reported])
    except ValueError:  # more links reported applied than the probe has: a forged report
        return False
    outcomes = [None] * len(checks)
    if not split.test_setup:  # the checks need nothing the test computes: try them here first
        outcomes = [quick_check(check, values) for check in checks]
    if False in outcomes:
        return False
    rest = [check for check, outcome in zip(checks, outcomes) if outcome is None]
    if not rest:
        return True
    # A second sandbox, holding test code only: the setup, the checks, the probes' plain values.
    checked = run_python(checks_source(setup, values, rest), limits=limits)
    return _clean_exit(checked) and all(read_checks(checked.stdout, len(rest)))


@register("code_stdio")
class CodeStdioVerifier(_CodeVerifier):
    @staticmethod
    def parse_tests(label: Any) -> list[dict] | None:
        tests = _load(label)
        fields = {"input", "output"}
        if isinstance(tests, (list, tuple)) and all(
            isinstance(t, dict) and fields <= set(t) and all(isinstance(t[k], str) for k in fields)
            for t in tests
        ):
            return tests
        return None

    @staticmethod
    def run_test(program: str, test: dict, limits: SandboxLimits) -> Verdict:
        result = run_python(program, stdin=test["input"], limits=limits)
        passed = _clean_exit(result) and _lines(result.stdout) == _lines(test["output"])
        return "pass" if passed else "fail"


def last_python_block(response: str) -> str | None:
    """The body of the last fenced block tagged python (or untagged); None when there is none."""
    blocks = [body for tag, body in _FENCE.findall(response) if tag.strip().lower() in _PYTHON_TAGS]
    return blocks[-1] if blocks and blocks[-1].strip() else None


def _load(label: Any) -> Any:
    """The label's tests: as given, from a JSON string, or from the base64 of a zlib-compressed
    pickle, as some of open-instruct's code rows carry them ("eJx...")."""
    return decoded_label(label, _unpickled)


def _unpickled(text: str) -> Any:
    try:
        return _PlainUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(text)))).load()
    except Exception:  # noqa: BLE001 -- a malformed blob is not a label of this shape
        return None


class _PlainUnpickler(pickle.Unpickler):
    """Lists, dicts, strings and numbers only. A pickle naming any class or function is refused,
    since loading it would run code that came with the data set."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a test label may not name {module}.{name}")


def _is_python(text: str) -> bool:
    try:
        compile(text, "<test>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def _clean_exit(result: SandboxResult) -> bool:
    return result.exit_code == 0 and not result.timed_out and not result.output_truncated


def _lines(text: str) -> list[str]:
    """Lines with surrounding blanks dropped, as judges of contest problems compare them."""
    return [line.strip() for line in text.strip().splitlines()]

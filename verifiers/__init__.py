"""Verifiers: score a response against a row's `ground_truth`, chosen by the row's `dataset`.

`build_verifier(name, options)` gives a ready verifier; `score_row` scores one response to one row
with the verifiers it names. Nothing here imports olmorl, Ray, vLLM or torch.
"""

from verifiers.base import Verifier, VerifierResult
from verifiers.options import VerifierConfigError
from verifiers.registry import (
    UnknownVerifierError,
    VerifierLoadError,
    available_verifiers,
    build_verifier,
    get_verifier_class,
    register,
)
from verifiers.scoring import RowScore, score_row

__all__ = [
    "RowScore",
    "UnknownVerifierError",
    "Verifier",
    "VerifierConfigError",
    "VerifierLoadError",
    "VerifierResult",
    "available_verifiers",
    "build_verifier",
    "get_verifier_class",
    "register",
    "score_row",
]

"""Instruction-following verifiers: IFEval's and IFBench's constraints, checked in code.

Importing the package registers every check (ifeval_checks, ifbench_checks) and the `ifeval`
verifier.
"""

from verifiers.ifeval import ifbench_checks, ifeval_checks  # noqa: F401  (registers the checks)
from verifiers.ifeval.verifier import IFEvalVerifier

__all__ = ["IFEvalVerifier"]

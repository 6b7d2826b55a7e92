"""A request carries its own seed only with `rollout.seeded` and never on CPU: a seeded request
sends vLLM's GPU sampler down a slower per-row path, and crashes vLLM 0.32 on CPU."""

import sys
from types import ModuleType, SimpleNamespace

import pytest

from olmorl.config import RolloutConfig
from olmorl.rollout.engine import request_seed, sampling_params


@pytest.mark.parametrize(
    "seeded, on_cpu, expected",
    [(False, False, None), (True, False, 7), (True, True, None), (False, True, None)],
)
def test_request_seed_only_when_asked_and_off_cpu(seeded, on_cpu, expected):
    assert request_seed(seeded, 7, on_cpu=on_cpu) == expected


def test_rollout_is_unseeded_by_default():
    assert RolloutConfig().seeded is False


@pytest.fixture
def fake_gpu_vllm(monkeypatch):
    """Just enough of `vllm` for `sampling_params`, on a platform that is not the CPU."""
    vllm = ModuleType("vllm")
    vllm.SamplingParams = lambda **kwargs: kwargs
    platforms = ModuleType("vllm.platforms")
    platforms.current_platform = SimpleNamespace(is_cpu=lambda: False)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)


@pytest.mark.parametrize("seeded, expected", [(False, None), (True, 3)])
def test_sampling_params_pass_the_seed_only_when_seeded(fake_gpu_vllm, seeded, expected):
    params = sampling_params(RolloutConfig(seeded=seeded, max_response_tokens=5), 4, 3)
    assert params == {"n": 4, "logprobs": 0, "seed": expected, "max_tokens": 5, "temperature": 1.0}

"""The fault-injection specs the failure-handling tests use."""

import pytest

from olmorl.actor_logs import actor_options, send_actor_logs_to
from olmorl.faults import FAULTS_ENV, inject, planned_action


def test_specs_match_on_point_and_conditions(monkeypatch):
    monkeypatch.setenv(FAULTS_ENV, "learner.step:rank=1:step=3=hang;engine.generate=raise")
    assert planned_action("learner.step", rank=1, step=3) == "hang"
    assert planned_action("learner.step", rank=0, step=3) is None
    assert planned_action("learner.step", rank=1, step=4) is None
    assert planned_action("engine.generate", engine=0) == "raise"
    send_actor_logs_to(None)
    assert actor_options("learner-0") == {
        "runtime_env": {"env_vars": {FAULTS_ENV: monkeypatch_value()}}
    }
    with pytest.raises(RuntimeError, match="injected fault at engine.generate"):
        inject("engine.generate")


def monkeypatch_value():
    return "learner.step:rank=1:step=3=hang;engine.generate=raise"


def test_nothing_happens_without_specs(monkeypatch):
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    send_actor_logs_to(None)
    assert actor_options("learner-0") == {}
    inject("learner.step", rank=0, step=1)


def test_an_unknown_action_is_refused(monkeypatch):
    monkeypatch.setenv(FAULTS_ENV, "learner.step=explode")
    with pytest.raises(ValueError, match="unknown action 'explode'"):
        inject("learner.step")

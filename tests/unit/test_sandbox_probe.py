"""Which sandbox the host allows, found once, and verifiers refusing to start without one. The
probe is replaced here, so these tests need neither root nor namespaces."""

import logging

import pytest

from verifiers import get_verifier_class, sandbox_probe
from verifiers.base import VerifierUnavailable


@pytest.fixture
def probe(monkeypatch):
    """Makes each way of making a sandbox fail, or not, as the test says; counts the tries."""
    failures, tries = {}, []

    def try_(isolation):
        tries.append(isolation)
        return failures.get(isolation)

    monkeypatch.setattr(sandbox_probe, "_try", try_)
    monkeypatch.setattr(sandbox_probe, "_found", None)
    monkeypatch.setattr(sandbox_probe.os, "geteuid", lambda: 0)
    return failures, tries


@pytest.mark.parametrize("name", ["code", "code_stdio"])
def test_code_verifiers_refuse_a_host_without_a_sandbox(probe, name) -> None:
    failures, _ = probe
    failures["rootful"] = "unshare: unshare failed: Operation not permitted"
    failures["rootless"] = "unshare: write failed /proc/self/uid_map: Operation not permitted"
    with pytest.raises(VerifierUnavailable) as raised:
        get_verifier_class(name).check_host()
    message = str(raised.value)
    assert message.startswith("the code verifiers need a sandbox: ")
    assert f"rootful failed ({failures['rootful']})" in message
    assert f"rootless failed ({failures['rootless']}" in message


def test_rootless_is_used_where_rootful_fails_and_the_probe_runs_once(probe, caplog) -> None:
    failures, tries = probe
    failures["rootful"] = "mount refused"
    with caplog.at_level(logging.INFO, logger=sandbox_probe.__name__):
        for _ in range(3):
            found = get_verifier_class("code").check_host()
            assert found == "code: model-written code runs in rootless sandboxes"
            assert sandbox_probe.host_isolation() == "rootless"
    assert tries == ["rootful", "rootless"]
    assert [r.getMessage() for r in caplog.records] == ["sandboxes run rootless"]


def test_an_unprivileged_process_does_not_try_rootful(probe, monkeypatch) -> None:
    _, tries = probe
    monkeypatch.setattr(sandbox_probe.os, "geteuid", lambda: 1000)
    assert sandbox_probe.host_isolation() == "rootless" and tries == ["rootless"]


def test_verifiers_without_host_needs_pass_the_check(probe) -> None:
    failures, tries = probe
    failures.update(rootful="no", rootless="no")
    assert get_verifier_class("contains").check_host() is None
    assert tries == []

"""Fixtures shared by unit tests."""

from collections.abc import Iterator

import pytest
from fake_judge import FakeJudge


@pytest.fixture
def judge() -> Iterator[FakeJudge]:
    fake = FakeJudge()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()

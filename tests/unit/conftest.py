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


@pytest.fixture
def rewriting_tokenizer():
    """The tiny tokenizer with a template that rewrites earlier assistant turns, as templates
    that drop the reasoning of all but the last turn do."""
    from olmorl.models.tokenizer import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}"
        "{{ '<|im_start|>assistant\n(hidden)<|im_end|>\n' }}{% else %}"
        "{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    return tokenizer

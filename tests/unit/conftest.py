"""Fixtures shared by unit tests."""

from collections.abc import Iterator

import pytest
from fake_judge import FakeJudge
from rendezvous_file import file_rendezvous


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


@pytest.fixture
def eager_flex_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers' flex_attention without torch.compile: the same block masks, evaluated by
    torch's unfused reference kernel. Compiled on CPU (transformers' default) the packing test's
    seven forwards take about 65 s, compiling per new shape; eagerly about 3 s. Forward only:
    torch 2.13 has no flex_attention backward on CPU, compiled or not."""
    import transformers.integrations.flex_attention as flex_integration
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    from transformers import masking_utils

    def uncompiled_flex_attention(query, key, value, training=False, **kwargs):
        return flex_attention(query, key, value, **kwargs)

    def uncompiled_block_mask(**kwargs):
        return create_block_mask(**{**kwargs, "_compile": False})

    monkeypatch.setattr(
        flex_integration, "compile_friendly_flex_attention", uncompiled_flex_attention
    )
    monkeypatch.setattr(masking_utils, "create_block_mask", uncompiled_block_mask)


class FakeClock:
    """`monotonic` and `sleep` of a module under test: time advances only by the sleeps."""

    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def spawn_ranks(tmp_path_factory: pytest.TempPathFactory):
    """`spawn_ranks(run_rank, name, world_size)`: writes the tiny and small presets, runs
    `run_rank(rank, init_method, tiny, small, out_dir)` in `world_size` spawned processes and
    returns each rank's saved `rank{N}.pt`, rank 0's with the transformers `reference` model
    added."""
    import torch
    import torch.multiprocessing as mp
    from transformers import AutoModelForCausalLM

    from olmorl.models.tiny import write_tiny_model

    def spawn(run_rank, name: str, world_size: int) -> list[dict]:
        root = tmp_path_factory.mktemp(name)
        tiny = write_tiny_model(root / "tiny", "tiny")
        small = write_tiny_model(root / "small", "small")
        mp.start_processes(
            run_rank,
            args=(file_rendezvous(root), str(tiny), str(small), str(root)),
            nprocs=world_size,
            start_method="spawn",
        )
        results = [torch.load(root / f"rank{rank}.pt") for rank in range(world_size)]
        results[0]["reference"] = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
        return results

    return spawn

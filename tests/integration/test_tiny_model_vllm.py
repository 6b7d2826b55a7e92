"""vLLM and transformers agree on the tiny Olmo 3 checkpoint: same log-probs for a fixed sequence.

vLLM runs Olmo 3 through its transformers backend on CPU, so a loading or config mismatch (rope,
sliding window, vocab padding) shows up here as a log-prob difference.
"""

import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from olmorl.models.tiny import SLIDING_WINDOW

if TYPE_CHECKING:
    from vllm import LLM

pytestmark = pytest.mark.integration

# float32 on both sides; observed ~1e-6.
MAX_LOGPROB_DIFFERENCE = 1e-3


def float32_engine(model_dir: Path, max_model_len: int) -> "LLM":
    from vllm import LLM

    return LLM(
        model=str(model_dir),
        dtype="float32",
        # On CPU this is the share of node memory for the KV cache; the default 0.92 fails.
        gpu_memory_utilization=0.2,
        max_model_len=max_model_len,
        enforce_eager=True,
        seed=0,
    )


def close(llm: "LLM") -> None:
    """Frees the engine's processes and memory so later integration tests can start their own."""
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


@pytest.fixture(scope="module")
def vllm_engine(tiny_model_dir: Path) -> Iterator["LLM"]:
    start = time.perf_counter()
    llm = float32_engine(tiny_model_dir, max_model_len=512)
    print(f"\nvLLM engine started in {time.perf_counter() - start:.1f} s")
    yield llm
    close(llm)


@pytest.fixture(scope="module")
def token_ids(tiny_model_dir: Path) -> list[int]:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    turns = [("user", f"What is {i} + {2 * i}? Write the word t{i}.") for i in range(8)]
    messages = [{"role": role, "content": content} for role, content in turns]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    # Longer than the window, so the sliding-attention layers really slide.
    assert len(ids) > 2 * SLIDING_WINDOW
    return ids


def _hf_logprobs(model_dir: Path, token_ids: list[int]) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([token_ids])).logits[0]  # [T, V]
    targets = torch.tensor(token_ids[1:])
    return torch.log_softmax(logits[:-1], dim=-1).gather(-1, targets[:, None])[:, 0]  # [T-1]


def _vllm_logprobs(llm: "LLM", token_ids: list[int]) -> torch.Tensor:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    # prompt_logprobs=0 returns the log-prob of each actual prompt token, from raw logits
    # (logprobs_mode defaults to raw_logprobs), after the first token which has none.
    params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0)
    (output,) = llm.generate([TokensPrompt(prompt_token_ids=token_ids)], params, use_tqdm=False)
    positions = output.prompt_logprobs[1:]
    return torch.tensor([pos[token].logprob for pos, token in zip(positions, token_ids[1:])])


def test_prompt_logprobs_match_transformers(vllm_engine, tiny_model_dir: Path, token_ids) -> None:
    hf = _hf_logprobs(tiny_model_dir, token_ids)
    vllm_logprobs = _vllm_logprobs(vllm_engine, token_ids)
    difference = (hf - vllm_logprobs).abs().max().item()
    print(f"max |logprob HF - vLLM| over {len(token_ids) - 1} tokens: {difference:.3g}")
    assert difference < MAX_LOGPROB_DIFFERENCE


def test_yarn_extended_checkpoint_agrees_beyond_the_original_context(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The long-context stage's output (YaRN ×2 on the full-attention layers only): transformers
    and vLLM give the same log-probs on a sequence past the original 1,024 positions, and they
    differ from the unextended model's there, so the scaled rope is really in use."""
    from olmorl.models.yarn import write_yarn_checkpoint

    extended = write_yarn_checkpoint(tiny_model_dir, tmp_path / "yarn", factor=2.0)
    token_ids = torch.randint(4, 600, (1500,), generator=torch.Generator().manual_seed(0)).tolist()
    llm = float32_engine(extended, max_model_len=2048)
    try:
        vllm_logprobs = _vllm_logprobs(llm, token_ids)
    finally:
        close(llm)
    hf = _hf_logprobs(extended, token_ids)
    difference = (hf - vllm_logprobs).abs().max().item()
    print(
        f"YaRN checkpoint: max |logprob HF - vLLM| over {len(token_ids) - 1} tokens: {difference:.3g}"
    )
    assert difference < MAX_LOGPROB_DIFFERENCE
    unextended = _hf_logprobs(tiny_model_dir, token_ids)
    assert (hf - unextended).abs().max().item() > 100 * MAX_LOGPROB_DIFFERENCE

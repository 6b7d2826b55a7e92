"""The tiny tokenizer and Olmo 3 model: round trips, chat format, architecture, determinism."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from olmorl.models.tiny import (
    MIN_HEAD_DIM,
    ROPE_THETA,
    TINY_PRESETS,
    build_tiny_config,
    build_tiny_model,
    padded_vocab_size,
)
from olmorl.models.tokenizer import (
    END_OF_TEXT,
    END_OF_TEXT_ID,
    IM_END,
    IM_END_ID,
    IM_START,
    IM_START_ID,
    PAD,
    PAD_ID,
    TARGET_WORDS,
    build_tiny_tokenizer,
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.mark.parametrize(
    "text",
    [
        "What is 12 + 30? Answer: \\boxed{42}",
        "$\\frac{1}{2} + \\sqrt{x^{2}}$ = \\boxed{\\frac{3}{4}}",
        "héllo wörld, 日本語 🙂 naïve café",
        "line one\n\n  indented\tline\r\nend \n",
        "  leading and trailing spaces  ",
        "3.14159 -2e10 1,000,000 007",
        "Write the word t18. t1 8 t18t1 at18 t63 t64",
        "a , b . c ! d ?",
    ],
)
def test_tokenizer_round_trips_exactly(tokenizer, text: str) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_target_words_are_single_distinct_tokens(tokenizer) -> None:
    ids = [tokenizer.encode(word) for word in TARGET_WORDS]
    assert all(len(word_ids) == 1 for word_ids in ids)
    assert len({word_ids[0] for word_ids in ids}) == len(TARGET_WORDS)
    assert tokenizer.encode("t18") != tokenizer.encode("t1")
    # Inside a sentence "t18" stays whole instead of matching "t1" then "8".
    assert tokenizer.encode("t18")[0] in tokenizer.encode("Write the word t18.")


def test_special_tokens(tokenizer) -> None:
    assert tokenizer.convert_tokens_to_ids([END_OF_TEXT, PAD, IM_START, IM_END]) == [
        END_OF_TEXT_ID,
        PAD_ID,
        IM_START_ID,
        IM_END_ID,
    ]
    assert tokenizer.eos_token == IM_END
    assert tokenizer.pad_token == PAD
    assert tokenizer.bos_token == END_OF_TEXT
    # Each special token is one id, and none is added implicitly on encode.
    assert tokenizer.encode(f"{IM_START}user\nhi{IM_END}")[0] == IM_START_ID
    assert tokenizer.encode(f"{IM_START}user\nhi{IM_END}")[-1] == IM_END_ID


def test_vocab_size_and_determinism(tokenizer) -> None:
    assert 512 <= len(tokenizer) <= 1024
    assert build_tiny_tokenizer().get_vocab() == tokenizer.get_vocab()
    assert padded_vocab_size(len(tokenizer)) % 64 == 0
    assert padded_vocab_size(641) == 704
    assert padded_vocab_size(640) == 640


def test_chat_template(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "Write the word t18."},
        {"role": "assistant", "content": "t18"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = (
        "<|im_start|>user\nWrite the word t18.<|im_end|>\n"
        "<|im_start|>assistant\nt18<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert rendered == expected


@pytest.mark.parametrize("preset", sorted(TINY_PRESETS))
def test_config_follows_olmo3(preset: str) -> None:
    config = build_tiny_config(preset, vocab_size=704)
    shape = TINY_PRESETS[preset]
    assert config.num_hidden_layers == shape.num_layers
    assert config.layer_types[-1] == "full_attention"
    for i, layer_type in enumerate(config.layer_types[:-1]):
        assert layer_type == ("full_attention" if i % 4 == 3 else "sliding_attention")
    assert config.hidden_size // config.num_attention_heads >= MIN_HEAD_DIM
    for layer_type in ("full_attention", "sliding_attention"):
        assert config.rope_parameters[layer_type]["rope_theta"] == ROPE_THETA
    assert not config.tie_word_embeddings


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid presets: \\['bench-0.6b', 'small', 'tiny'\\]"):
        build_tiny_config("huge", vocab_size=704)


def test_weights_depend_only_on_seed() -> None:
    rng_state = torch.get_rng_state()
    first = build_tiny_model(vocab_size=704, seed=0).state_dict()
    assert torch.equal(torch.get_rng_state(), rng_state), "building must not move the global RNG"
    second = build_tiny_model(vocab_size=704, seed=0).state_dict()
    other = build_tiny_model(vocab_size=704, seed=1).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(first["model.embed_tokens.weight"], other["model.embed_tokens.weight"])
    assert all(tensor.dtype == torch.float32 for tensor in first.values())


def test_checkpoint_loads_back(tiny_model_dir: Path, tokenizer) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    loaded_tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    built = build_tiny_model(vocab_size=model.config.vocab_size, seed=0).state_dict()
    assert model.dtype == torch.float32
    assert model.config.vocab_size == padded_vocab_size(len(tokenizer))
    assert all(torch.equal(tensor, built[name]) for name, tensor in model.state_dict().items())

    text = "<|im_start|>user\nWhat is 2 + 2? Write the word t18.<|im_end|>\n"
    assert loaded_tokenizer.encode(text) == tokenizer.encode(text)
    assert loaded_tokenizer.eos_token == IM_END and loaded_tokenizer.pad_token == PAD
    assert loaded_tokenizer.chat_template == tokenizer.chat_template

    generation_config = GenerationConfig.from_pretrained(tiny_model_dir)
    assert generation_config.eos_token_id == [IM_END_ID, END_OF_TEXT_ID]
    assert generation_config.pad_token_id == PAD_ID


def test_a_missing_preset_model_is_written_once_and_atomically(tmp_path):
    from transformers import AutoConfig

    from olmorl.models.tiny import ensure_tiny_model

    path = tmp_path / "models" / "tiny"
    assert ensure_tiny_model(path, "tiny") is True
    assert AutoConfig.from_pretrained(path).num_hidden_layers == 4
    assert [p.name for p in path.parent.iterdir()] == ["tiny"]  # no temporary left behind
    assert ensure_tiny_model(path, "small") is False  # something is there: left alone
    assert AutoConfig.from_pretrained(path).num_hidden_layers == 4

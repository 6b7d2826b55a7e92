"""A tiny byte-level BPE tokenizer with the Olmo 3 chat special tokens and template.

`build_tiny_tokenizer()` trains it in a second on a corpus generated in code, so tests and toy
runs need no model hub. Byte-level BPE with no normaliser gives decode(encode(text)) == text.
"""

from collections.abc import Iterator

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (END_OF_TEXT, PAD, IM_START, IM_END)
# The BPE trainer gives the special tokens the first ids, in this order.
END_OF_TEXT_ID, PAD_ID, IM_START_ID, IM_END_ID = range(len(SPECIAL_TOKENS))

NUM_TARGET_WORDS = 64
TARGET_WORDS = tuple(f"t{i}" for i in range(NUM_TARGET_WORDS))

# Trained BPE vocabulary (256 bytes, special tokens, merges); the target words come on top. Not a
# multiple of 64, so the model's padded embedding rows are exercised too.
BPE_VOCAB_SIZE = 600

# Olmo 3 chat format: one `<|im_start|>role\ncontent<|im_end|>\n` block per message.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Olmo 3 Think's: the same, with the generation prompt opening the reasoning block, so that a
# response holds `</think>` but no `<think>`.
THINK_START, THINK_END = "<think>", "</think>"
THINK_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("assistant\n' }}", "assistant\n<think>' }}")

_TASK_PHRASES = (
    "Write the word",
    "What is",
    "Answer:",
    "Question:",
    "Compute the sum of",
    "Find the value of",
    "Repeat the word",
    "Reverse the letters of",
    "Please think step by step and put your final answer within a box.",
    "You are a helpful assistant.",
    "Let us first count the words in the sentence, then copy the result.",
    "yes no true false user assistant system",
)


def _training_corpus() -> Iterator[str]:
    """Text shaped like the synthetic tasks: arithmetic, simple LaTeX and the task phrases."""
    for a in range(40):
        for b in range(0, 40, 3):
            yield f"What is {a} + {b}? Answer: \\boxed{{{a + b}}}"
            yield f"Compute {a} * {b} = {a * b}, so {a} - {b} = {a - b}."
            yield f"$\\frac{{{a}}}{{{b + 1}}}$ and $x^{{{b}}} + \\sqrt{{{a}}}$"
    for phrase in _TASK_PHRASES:
        for word in phrase.split():
            yield f"{phrase} {word}.\nAnswer: {word} {word.lower()} {word.upper()}\n"
    yield "0123456789 (){}[]<>=+-*/^_.,;:!?'\"\\$%&#@~`|\n\t"


def _build_bpe_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    # No normaliser and no prefix space: both would break the exact round trip.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    # single_word: otherwise "t18" would match the added token "t1" followed by "8".
    tokenizer.add_tokens([AddedToken(word, single_word=True) for word in TARGET_WORDS])
    return tokenizer


def build_tiny_tokenizer(thinking: bool = False) -> PreTrainedTokenizerFast:
    """Train the tiny chat tokenizer; the same vocabulary on every call. `thinking`: Olmo 3
    Think's format, the think tags added as special tokens after every other id."""
    bpe = _build_bpe_tokenizer()
    if thinking:
        bpe.add_special_tokens([THINK_START, THINK_END])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=END_OF_TEXT,
        eos_token=IM_END,
        pad_token=PAD,
        extra_special_tokens=[IM_START, *((THINK_START, THINK_END) if thinking else ())],
        chat_template=THINK_CHAT_TEMPLATE if thinking else CHAT_TEMPLATE,
        # The default cleanup rewrites " ," to "," on decode, which breaks the round trip.
        clean_up_tokenization_spaces=False,
    )

"""Packed SFT rows train exactly like one conversation per row: same loss, same gradient."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from olmorl.algo import token_logprobs
from olmorl.algo.nll import masked_nll_loss
from olmorl.data.sft_rows import pack_sft_examples, tokenize_conversation
from olmorl.data.synth import chat_copy_rows


def loss_and_grads(model, rows, total_tokens):
    model.zero_grad()
    total = 0.0
    for row in rows:
        inputs = row.model_inputs()
        logprobs = token_logprobs(model(**inputs).logits, inputs["input_ids"], 1.0)
        loss, _ = masked_nll_loss(logprobs, row.loss_mask.unsqueeze(0), total_tokens)
        loss.backward()
        total += float(loss)
    return total, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_packed_and_unpacked_give_the_same_loss_and_gradient(tiny_model_dir):
    # float32: token_logprobs computes in float32 whatever the model dtype.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    rows = chat_copy_rows(5, seed=3)
    rows[1]["messages"] = [  # a multi-turn conversation: two trained turns
        *rows[1]["messages"],
        {"role": "user", "content": "Write the word t4 too."},
        {"role": "assistant", "content": "t4"},
    ]
    examples = [tokenize_conversation(r["messages"], tokenizer, 256) for r in rows]
    total_tokens = sum(sum(mask) for _, mask in examples)
    packed = pack_sft_examples(examples, max_tokens=4096)
    assert len(packed) == 1 and len(packed[0].seq_lens) == 5
    unpacked = [pack_sft_examples([example], max_tokens=4096)[0] for example in examples]

    packed_loss, packed_grads = loss_and_grads(model, packed, total_tokens)
    unpacked_loss, unpacked_grads = loss_and_grads(model, unpacked, total_tokens)
    print(f"loss packed {packed_loss:.12f} unpacked {unpacked_loss:.12f}")
    assert abs(packed_loss - unpacked_loss) < 1e-5
    worst = max((packed_grads[n] - unpacked_grads[n]).abs().max().item() for n in packed_grads)
    print(f"largest gradient difference {worst:.3e}")
    assert worst < 1e-5
    # The check can fail: attention that crossed documents would change the packed loss.
    crossing = {**packed[0].model_inputs(), "position_ids": None}
    crossed = masked_nll_loss(
        token_logprobs(model(**crossing).logits, crossing["input_ids"], 1.0),
        packed[0].loss_mask.unsqueeze(0),
        total_tokens,
    )[0]
    assert abs(float(crossed) - packed_loss) > 1e-3

"""The learner alone on one GPU: a bf16 train step, peak memory against an estimate, MFU, packing.

    python launch/learner_gpu_check.py [--preset bench-0.6b] [--layers-7b 2] [--doc-lengths ...]

Runs the learner's own pieces (FSDP2 with float32 masters and bf16 compute, the chunked LM head,
packed rows, AdamW with clipping) in one process, with no Ray and no vLLM, on the GPU (the CPU
when there is none), over models built from configs with random weights: nothing is downloaded or
read. Prints one JSON object per line and check. Needs torch and transformers only.
"""

import argparse
import gc
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from olmorl.algo.masks import TrajectoryTokens
from olmorl.algo.nll import masked_nll_loss
from olmorl.algo.packing import PackedRow, concatenate_documents
from olmorl.learner.attention import resolve_attn_implementation
from olmorl.learner.loading import materialize, parameters_on_meta
from olmorl.learner.parallelize import parallelize_fsdp2
from olmorl.learner.scoring import use_chunked_head
from olmorl.models.tiny import TinyModelPreset, build_tiny_config, get_preset
from olmorl.plan.memory import LearnerSetup, learner_bytes
from olmorl.plan.shapes import ModelShape

H100_BF16_DENSE_TFLOPS = 989.0
OLMO3_SLIDING_WINDOW = 4096


@dataclass(frozen=True)
class _Strategy:
    """The two fields of `olmorl.config.FSDP2Strategy` that `parallelize_fsdp2` reads (the
    config module needs pydantic, which this check does without)."""

    activation_checkpointing: bool = False
    reshard_after_forward: bool = True


def step_flops(config, doc_lengths: list[int]) -> dict[str, int]:
    """Model FLOPs of one forward and backward over a packed row of these documents.

    Matmuls: 6·N·tokens (Kaplan et al. 2020), N the parameters that multiply activations (all
    but the input embeddings). Attention: 12·d per (query, key) pair per layer, d = heads ×
    head_dim (QKᵀ and AV, 2 FLOPs a multiply-add, backward twice forward: PaLM, Chowdhery et al.
    2022, App. B), counting the pairs a document's causal mask keeps: Σ_{q=1..n} min(q, w), w the
    layer's window (sliding layers) or n. Recomputation (the LM head's backward) is not counted.
    """
    tokens = sum(doc_lengths)
    n_matmul = ModelShape.from_config(config).num_params - config.vocab_size * config.hidden_size
    d = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    pairs = 0
    for layer_type in config.layer_types:
        for n in doc_lengths:
            w = config.sliding_window if layer_type == "sliding_attention" else n
            w = min(w, n)
            pairs += w * (w + 1) // 2 + (n - w) * w  # Σ_{q=1..n} min(q, w)
    return {"matmul_flops": 6 * n_matmul * tokens, "attention_flops": 12 * d * pairs}


def build_model(config, device: str, attn: str, seed: int) -> torch.nn.Module:
    """The learner's model: built on meta, sharded by FSDP2 (float32 masters, bf16 compute),
    given its storage on `device`, then random weights there (normal(0, 0.02), norms 1)."""
    from transformers import AutoModelForCausalLM

    with parameters_on_meta():
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.float32, attn_implementation=attn
        )
    model.config.use_cache = False
    mesh = init_device_mesh(device, (1,))
    model = parallelize_fsdp2(model, _Strategy(), mesh, torch.bfloat16).train()
    materialize(model, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            local = param.to_local()
            if "norm" in name:
                local.fill_(1.0)
            else:
                local.normal_(0.0, 0.02, generator=generator)
    return model


def packed_row(doc_lengths: list[int], vocab_size: int, seed: int) -> PackedRow:
    """Random documents packed in one row; every token but each document's first is trained."""
    generator = torch.Generator().manual_seed(seed)
    docs = []
    for n in doc_lengths:
        mask = torch.ones(n, dtype=torch.bool)
        mask[0] = False
        ids = torch.randint(0, vocab_size, (n,), generator=generator)
        docs.append(TrajectoryTokens(ids, mask, torch.zeros(n), torch.zeros(n)))
    return concatenate_documents(docs, tuple(range(len(docs))))


def _inputs(row: PackedRow, device: str, attn: str) -> dict:
    inputs = row.model_inputs(varlen=attn == "flash_attention_2")
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_step(model, optimizer, row: PackedRow, device: str, attn: str) -> dict:
    """Forward, backward and AdamW step over one packed row, as `LearnerWorker.sft_step` runs
    it; the loss, the gradient norm before clipping, and whether every gradient is finite."""
    scores = model(**_inputs(row, device, attn))
    mask = row.loss_mask.to(device).unsqueeze(0)  # [1, T]
    loss, _ = masked_nll_loss(scores.logprobs, mask, row.num_loss_tokens)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    finite = all(g is not None and bool(torch.isfinite(g.to_local()).all()) for g in grads)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    return {"loss": float(loss.detach()), "grad_norm": float(norm), "grads_finite": finite}


@torch.no_grad()
def packing_difference(model, row: PackedRow, device: str, attn: str) -> float:
    """Largest |log p| difference between the packed row and its documents run one at a time,
    over each document's scored tokens (all but its first)."""
    packed = model(**_inputs(row, device, attn)).logprobs[0].float().cpu()  # [T]
    largest, start = 0.0, 0
    for n in row.seq_lens:
        alone = concatenate_documents(
            [
                TrajectoryTokens(
                    row.input_ids[start : start + n],
                    row.loss_mask[start : start + n],
                    torch.zeros(n),
                    torch.zeros(n),
                )
            ],
            (0,),
        )
        single = model(**_inputs(alone, device, attn)).logprobs[0].float().cpu()  # [n]
        diff = (packed[start + 1 : start + n] - single[1:]).abs().max()
        largest = max(largest, float(diff))
        start += n
    return largest


def check(name: str, config, args, device: str, attn: str) -> list[dict]:
    """The JSON records of one model: train step, memory, MFU, packing."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build_model(config, device, attn, args.seed)
    use_chunked_head(model, args.chunk_tokens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    row = packed_row(args.doc_lengths, config.vocab_size, args.seed)
    base = {"model": name, "device": device, "attn_implementation": attn, "tokens": len(row)}

    for _ in range(args.warmup):
        train_step(model, optimizer, row, device, attn)
    times, step = [], {}
    for _ in range(args.steps):
        _sync(device)
        start = time.perf_counter()
        step = train_step(model, optimizer, row, device, attn)
        _sync(device)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]  # the median step

    n = sum(p.numel() for p in model.parameters())
    # One rank holds everything (world size 1), bf16 compute over float32 masters: the planner's
    # estimate (olmorl/plan/memory.py) for this row.
    setup = LearnerSetup(
        len(row), chunk_tokens=args.chunk_tokens, dense_masks=attn in ("sdpa", "eager")
    )
    estimate = learner_bytes(ModelShape.from_config(config), setup)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    flops = step_flops(config, args.doc_lengths)
    total_flops = flops["matmul_flops"] + flops["attention_flops"]
    achieved = total_flops / seconds / 1e12
    records = [
        {
            "check": "train_step",
            **base,
            "params": n,
            **step,
            "ln_vocab": math.log(config.vocab_size),
            "step_seconds": seconds,
        },
        {
            "check": "memory",
            **base,
            "peak_bytes": peak,
            "estimate_bytes": sum(estimate.values()),
            "estimate": estimate,
            "peak_over_estimate": None if peak is None else peak / sum(estimate.values()),
        },
        {
            "check": "mfu",
            **base,
            **flops,
            "step_seconds": seconds,
            "achieved_tflops": achieved,
            "peak_tflops": args.peak_tflops,
            "mfu": achieved / args.peak_tflops,
        },
        {
            "check": "packing",
            **base,
            "doc_lengths": args.doc_lengths,
            "max_abs_logprob_diff": packing_difference(model, row, device, attn),
        },
    ]
    del model, optimizer
    return records


def model_configs(args) -> dict:
    """The preset, and the few 7B-shaped layers."""
    from olmorl.models.tiny import padded_vocab_size
    from olmorl.models.tokenizer import build_tiny_tokenizer

    longest = max(args.doc_lengths)
    configs = {}
    if args.preset != "none":
        if longest > get_preset(args.preset).max_position_embeddings:
            raise SystemExit(f"--doc-lengths: {longest} is longer than {args.preset} allows")
        # The preset's vocabulary, as `olmorl tiny-model` writes it.
        vocab = padded_vocab_size(len(build_tiny_tokenizer()))
        configs[args.preset] = build_tiny_config(args.preset, vocab)
    if args.layers_7b > 0:
        shape = TinyModelPreset(
            num_layers=args.layers_7b,
            hidden_size=args.hidden,
            num_heads=args.heads,
            intermediate_size=args.intermediate,
            max_position_embeddings=max(8192, longest),
        )
        name = f"7b-shaped-{args.layers_7b}-layers"
        configs[name] = build_tiny_config(shape, args.vocab, sliding_window=args.sliding_window)
    return configs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bench-0.6b", help="olmorl.models.tiny preset; none")
    parser.add_argument("--layers-7b", type=int, default=2, help="7B-shaped layers; 0: none")
    parser.add_argument("--hidden", type=int, default=4096, help="7B-shaped width")
    parser.add_argument("--heads", type=int, default=32, help="7B-shaped attention heads")
    parser.add_argument("--intermediate", type=int, default=11008, help="7B-shaped MLP width")
    parser.add_argument("--vocab", type=int, default=100_352, help="7B-shaped vocabulary")
    parser.add_argument("--sliding-window", type=int, default=OLMO3_SLIDING_WINDOW)
    parser.add_argument(
        "--doc-lengths",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1024, 2048, 1024],
        help="lengths of the documents packed into the row, comma-separated",
    )
    parser.add_argument("--chunk-tokens", type=int, default=1024, help="LM head chunk")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=H100_BF16_DENSE_TFLOPS,
        help="the device's peak bf16 TFLOP/s (default: H100 SXM, dense)",
    )
    parser.add_argument("--attn-implementation", default=None, help="default: the learner's")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or min(args.doc_lengths) < 2:
        parser.error("--steps must be >= 1 and every document at least 2 tokens long")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    attn = resolve_attn_implementation(args.attn_implementation, device, "bfloat16")
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        import transformers

        print(
            json.dumps(
                {
                    "check": "environment",
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "device": device,
                    "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                    "attn_implementation": attn,
                }
            ),
            flush=True,
        )
        for name, config in model_configs(args).items():
            for record in check(name, config, args, device, attn):
                print(json.dumps(record), flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

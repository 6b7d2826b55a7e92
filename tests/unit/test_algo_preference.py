"""DPO, dpo_norm and SimPO against hand-derived numbers and an independent float64 loop."""

import math
import random

import pytest
import torch

from olmorl.algo import preference_loss, sequence_logps

KINDS = ("dpo", "dpo_norm", "simpo")
BETA = {"dpo": 0.1, "dpo_norm": 5.0, "simpo": 2.0}
GAMMA = {"dpo": 0.0, "dpo_norm": 0.0, "simpo": 1.0}


def t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def softplus(x: float) -> float:
    """log(1 + e^x) without overflow."""
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def reference(kind, beta, gamma, pc, pr, rc, rr, lc, lr):
    """Per pair, written from the papers' formulas one scalar at a time; returns loss, metrics."""
    n = len(pc)
    out = dict.fromkeys(
        ["loss", "rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy"], 0.0
    )
    out["logps/chosen"] = out["logps/rejected"] = 0.0
    for i in range(n):
        if kind == "dpo":
            # β·log(π(y_w)/π_ref(y_w)) with log π(y) = Σ_t log π(y_t | …)
            w, l = beta * (pc[i] - rc[i]), beta * (pr[i] - rr[i])
            lw, ll = pc[i], pr[i]
        elif kind == "dpo_norm":
            w = beta * (pc[i] / lc[i] - rc[i] / lc[i])
            l = beta * (pr[i] / lr[i] - rr[i] / lr[i])
            lw, ll = pc[i] / lc[i], pr[i] / lr[i]
        else:  # SimPO eq. 6: β/|y_w|·log π(y_w) − β/|y_l|·log π(y_l) − γ
            w, l = beta / lc[i] * pc[i], beta / lr[i] * pr[i]
            lw, ll = pc[i] / lc[i], pr[i] / lr[i]
        z = w - l - gamma
        out["loss"] += -math.log(1.0 / (1.0 + math.exp(-z))) / n if z > -30 else softplus(-z) / n
        out["rewards/chosen"] += w / n
        out["rewards/rejected"] += l / n
        out["rewards/margin"] += (w - l) / n
        out["rewards/accuracy"] += (1.0 if w > l else 0.0) / n
        out["logps/chosen"] += lw / n
        out["logps/rejected"] += ll / n
    return out


def random_batch(seed: int, n: int = 16):
    rng = random.Random(seed)
    lc = [rng.randint(1, 120) for _ in range(n)]
    lr = [rng.randint(1, 120) for _ in range(n)]
    # Summed log-probs of roughly −0.1 … −3 nats per token; the reference near the policy.
    pc = [-rng.uniform(0.1, 3.0) * k for k in lc]
    pr = [-rng.uniform(0.1, 3.0) * k for k in lr]
    rc = [p + rng.gauss(0.0, 2.0) for p in pc]
    rr = [p + rng.gauss(0.0, 2.0) for p in pr]
    return pc, pr, rc, rr, lc, lr


def call(kind, pc, pr, rc, rr, lc, lr, beta=None, gamma=None, **kwargs):
    return preference_loss(
        t(pc),
        t(pr),
        None if rc is None else t(rc),
        None if rr is None else t(rr),
        None if lc is None else t(lc, torch.long),
        None if lr is None else t(lr, torch.long),
        kind=kind,
        beta=BETA[kind] if beta is None else beta,
        gamma=GAMMA[kind] if gamma is None else gamma,
        **kwargs,
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_float64_loop(kind, seed):
    batch = random_batch(seed)
    loss, metrics = call(kind, *batch)
    expected = reference(kind, BETA[kind], GAMMA[kind], *batch)
    assert loss.item() == pytest.approx(expected["loss"], rel=1e-12, abs=1e-12)
    assert {k: v.item() for k, v in metrics.items()} == pytest.approx(expected, rel=1e-12)
    assert 0.0 < expected["rewards/accuracy"] < 1.0  # the batch exercises both outcomes


# Hand examples, two pairs each; −log σ(z) = log(1 + e^−z).
#
# dpo, β = 0.1 (lengths unused):
#   pair 0: s_π(w) = −10, s_ref(w) = −12, s_π(l) = −20, s_ref(l) = −15
#           r_w = 0.1·2 = 0.2, r_l = 0.1·(−5) = −0.5, z = 0.7, loss = log(1 + e^−0.7) = 0.40318605
#   pair 1: s_π(w) = −8, s_ref(w) = −5, s_π(l) = −9, s_ref(l) = −9
#           r_w = −0.3, r_l = 0, z = −0.3, loss = 0.3 + log(1 + e^−0.3) = 0.85435524
#   mean loss 0.62877065; rewards/chosen (0.2 − 0.3)/2 = −0.05; rewards/rejected −0.25;
#   margin (0.7 − 0.3)/2 = 0.2; accuracy 1/2; logps/chosen −9, logps/rejected −14.5
# dpo_norm, β = 5:
#   pair 0: ℓ_π(w) = −6/3 = −2, ℓ_ref(w) = −7.5/3 = −2.5, ℓ_π(l) = −12/4 = −3, ℓ_ref(l) = −10/4
#           r_w = 5·0.5 = 2.5, r_l = 5·(−0.5) = −2.5, z = 5, loss = log(1 + e^−5) = 0.00671535
#           (summed dpo at β = 5 would have z = 5·(1.5 + 2) = 17.5 instead)
#   pair 1: policy = reference, z = 0, loss = log 2 = 0.69314718
#   mean loss 0.34993126; rewards/chosen 1.25; rewards/rejected −1.25; margin 2.5; accuracy 1/2
# simpo, β = 2, γ = 1 (reference ignored):
#   pair 0: ℓ(w) = −4/4 = −1, ℓ(l) = −6/3 = −2; r_w = −2, r_l = −4, z = 2 − 1 = 1,
#           loss = log(1 + e^−1) = 0.31326169
#   pair 1: ℓ(w) = −3/2 = −1.5, ℓ(l) = −3/2; r_w = r_l = −3, z = −1, loss = 1 + 0.31326169
#   mean loss 0.81326169; rewards/chosen −2.5; rewards/rejected −3.5; margin 1; accuracy 1/2
HAND = {
    "dpo": (
        {
            "pc": [-10, -8],
            "pr": [-20, -9],
            "rc": [-12, -5],
            "rr": [-15, -9],
            "lc": [1, 1],
            "lr": [1, 1],
        },
        {
            "loss": 0.62877065,
            "rewards/chosen": -0.05,
            "rewards/rejected": -0.25,
            "rewards/margin": 0.2,
            "rewards/accuracy": 0.5,
            "logps/chosen": -9.0,
            "logps/rejected": -14.5,
        },
    ),
    "dpo_norm": (
        {
            "pc": [-6, -4],
            "pr": [-12, -4],
            "rc": [-7.5, -4],
            "rr": [-10, -4],
            "lc": [3, 2],
            "lr": [4, 8],
        },
        {
            "loss": 0.34993126,
            "rewards/chosen": 1.25,
            "rewards/rejected": -1.25,
            "rewards/margin": 2.5,
            "rewards/accuracy": 0.5,
            "logps/chosen": (-2 - 2) / 2,
            "logps/rejected": (-3 - 0.5) / 2,
        },
    ),
    "simpo": (
        {"pc": [-4, -3], "pr": [-6, -3], "rc": None, "rr": None, "lc": [4, 2], "lr": [3, 2]},
        {
            "loss": 0.81326169,
            "rewards/chosen": -2.5,
            "rewards/rejected": -3.5,
            "rewards/margin": 1.0,
            "rewards/accuracy": 0.5,
            "logps/chosen": -1.25,
            "logps/rejected": -1.75,
        },
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_hand_examples(kind):
    inputs, expected = HAND[kind]
    _, metrics = call(kind, **inputs)
    assert {k: v.item() for k, v in metrics.items()} == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_reaches_policy_only(kind):
    # d(−log σ(z))/dz = −σ(−z); z = β·(x_w/d_w − x_l/d_l) + const, d = 1 for dpo, |y| otherwise.
    pc, pr, rc, rr, lc, lr = random_batch(3, n=6)
    inputs = [t(v).requires_grad_() for v in (pc, pr, rc, rr)]
    loss, metrics = preference_loss(
        *inputs,
        t(lc),
        t(lr),
        kind=kind,
        beta=BETA[kind],
        gamma=GAMMA[kind],
    )
    loss.backward()
    beta, n = BETA[kind], len(pc)
    grad_chosen, grad_rejected = [], []
    for i in range(n):
        dw, dl = (1, 1) if kind == "dpo" else (lc[i], lr[i])
        if kind == "simpo":
            z = beta * (pc[i] / dw - pr[i] / dl) - GAMMA[kind]
        else:
            z = beta * ((pc[i] - rc[i]) / dw - (pr[i] - rr[i]) / dl)
        sigma_neg = 1.0 / (1.0 + math.exp(z))
        grad_chosen.append(-sigma_neg * beta / dw / n)
        grad_rejected.append(sigma_neg * beta / dl / n)
    torch.testing.assert_close(inputs[0].grad, t(grad_chosen), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(inputs[1].grad, t(grad_rejected), rtol=1e-12, atol=1e-15)
    assert inputs[2].grad is None and inputs[3].grad is None
    assert all(not v.requires_grad for v in metrics.values())


@pytest.mark.parametrize("kind", ["dpo", "dpo_norm"])
def test_policy_equal_to_reference_costs_log_2(kind):
    pc, pr, _, _, lc, lr = random_batch(4)
    loss, metrics = call(kind, pc, pr, pc, pr, lc, lr)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-15)
    assert metrics["rewards/margin"].item() == 0.0
    assert metrics["rewards/accuracy"].item() == 0.0  # a tie is not a correct preference


@pytest.mark.parametrize("kind", KINDS)
def test_swapping_chosen_and_rejected_flips_the_margin(kind):
    pc, pr, rc, rr, lc, lr = batch = random_batch(5)
    loss, metrics = call(kind, *batch, gamma=0.0)
    swapped_loss, swapped = call(kind, pr, pc, rr, rc, lr, lc, gamma=0.0)
    assert swapped["rewards/margin"].item() == pytest.approx(-metrics["rewards/margin"].item())
    assert swapped["rewards/accuracy"].item() == pytest.approx(
        1.0 - metrics["rewards/accuracy"].item()
    )
    # softplus(−z) − softplus(z) = −z, so the two mean losses differ by the mean margin.
    assert (loss - swapped_loss).item() == pytest.approx(-metrics["rewards/margin"].item())


def test_dpo_norm_is_invariant_to_repeating_a_response_but_dpo_is_not():
    # Repeating every response twice doubles each summed log-prob (policy and reference) and
    # each length: the per-token averages, hence dpo_norm, are unchanged; summed dpo is not.
    pc, pr, rc, rr, lc, lr = random_batch(6)

    def doubled(values):
        return [2 * v for v in values]

    once, _ = call("dpo_norm", pc, pr, rc, rr, lc, lr)
    twice, _ = call("dpo_norm", *map(doubled, (pc, pr, rc, rr, lc, lr)))
    assert twice.item() == pytest.approx(once.item(), rel=1e-12)
    once, _ = call("dpo", pc, pr, rc, rr, lc, lr)
    twice, _ = call("dpo", *map(doubled, (pc, pr, rc, rr, lc, lr)))
    assert abs(twice.item() - once.item()) > 1e-3


def test_dpo_ignores_lengths_and_simpo_ignores_the_reference():
    pc, pr, rc, rr, lc, lr = random_batch(7)
    with_lengths, _ = call("dpo", pc, pr, rc, rr, lc, lr)
    without, _ = call("dpo", pc, pr, rc, rr, None, None)
    assert with_lengths.item() == without.item()
    with_ref, _ = call("simpo", pc, pr, rc, rr, lc, lr)
    without, _ = call("simpo", pc, pr, None, None, lc, lr)
    assert with_ref.item() == without.item()


def test_simpo_margin_shifts_z_by_gamma():
    # One pair with β·(ℓ_w − ℓ_l) = 2·(−1 + 2) = 2: γ = 2 puts it at z = 0, loss log 2.
    loss, metrics = call("simpo", [-4], [-6], None, None, [4], [3], beta=2.0, gamma=2.0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-15)
    assert metrics["rewards/margin"].item() == pytest.approx(2.0)


@pytest.mark.parametrize("kind", KINDS)
def test_micro_batches_sum_to_the_step_mean(kind):
    batch = random_batch(8, n=10)
    full_loss, full = call(kind, *batch)
    parts = [
        call(kind, *(None if v is None else v[s] for v in batch), total_pairs=10)
        for s in (slice(0, 3), slice(3, 10))
    ]
    assert sum(p[0] for p in parts).item() == pytest.approx(full_loss.item(), rel=1e-12)
    for name in full:
        assert sum(p[1][name] for p in parts).item() == pytest.approx(full[name].item(), rel=1e-12)


def test_large_margins_stay_finite():
    # Summed dpo on long responses: z = ±0.1·(−10,000) = −1000 would overflow a naive log σ.
    loss, _ = call("dpo", [-10_000.0, 0.0], [0.0, -10_000.0], [0.0] * 2, [0.0] * 2, None, None)
    assert loss.item() == pytest.approx((1000.0 + 0.0) / 2, rel=1e-12)


GOOD_ARGS = {
    "pc": [-1, -2],
    "pr": [-2, -3],
    "rc": [-1, -1],
    "rr": [-1, -1],
    "lc": [3, 4],
    "lr": [2, 5],
}


@pytest.mark.parametrize(
    "kind, changes, fragment",
    [
        ("dpo", {"gamma": 0.5}, "only used by kind 'simpo'"),
        ("dpo_norm", {"rc": None}, "needs the reference"),
        ("dpo_norm", {"lr": None}, "needs rejected_lengths"),
        ("simpo", {"lc": [3, 0]}, r"chosen_lengths must all be > 0, got \[3, 0\]"),
        ("dpo", {"total_pairs": 0}, "total_pairs must be > 0"),
    ],
)
def test_bad_arguments(kind, changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        call(kind, **{**GOOD_ARGS, **changes})


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of dpo, dpo_norm, simpo, got 'ipo'"):
        preference_loss(*(t(v) for v in GOOD_ARGS.values()), kind="ipo", beta=1.0)


def test_sequence_logps_sums_the_response_tokens():
    token_logprobs = t([[0.0, -1.0, -0.5, -math.inf], [0.0, -2.0, -0.25, -0.25]])
    mask = torch.tensor([[False, False, True, False], [False, True, True, True]])
    summed, lengths = sequence_logps(token_logprobs, mask)
    torch.testing.assert_close(summed, t([-0.5, -2.5]), rtol=0, atol=0)
    assert lengths.tolist() == [1, 3]

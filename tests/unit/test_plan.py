"""`olmorl plan`: the Olmo 3 recipes fit their published clusters, a plan that cannot fit is
refused with what would, and the learner estimate agrees with a measured peak."""

import pytest
import torch
from live_bytes import PeakLiveBytes
from typer.testing import CliRunner

from olmorl.algo.nll import masked_nll_loss
from olmorl.cli import app
from olmorl.config import RLConfig, load_config
from olmorl.learner.scoring import use_chunked_head
from olmorl.models.tiny import build_tiny_model
from olmorl.placement import rl_needs
from olmorl.plan.memory import LearnerSetup, kv_cache_bytes, learner_bytes
from olmorl.plan.planner import ClusterShape, place, plan_rl
from olmorl.plan.shapes import OLMO3_7B, ModelShape

RECIPES = "recipes/olmo3"
# The published cluster of each RL recipe: learner + rollout GPUs (+ the judge's 4) on 8-GPU
# nodes of 80 GB.
PUBLISHED_CLUSTERS = {
    "think_7b": "9x8:80",
    "think_32b": "28x8:80",
    "instruct_7b": "9x8:80",
    "rl_zero_math_7b": "9x8:80",
    "rl_zero_code_7b": "9x8:80",
    "rl_zero_if_7b": "9x8:80",
    "rl_zero_general_7b": "10x8:80",
    "rl_zero_mix_7b": "10x8:80",
}


NINE_NODES = ClusterShape(9, 8, 80.0)


def recipe(name: str, *overrides: str) -> RLConfig:
    return load_config(RLConfig, f"{RECIPES}/{name}.yaml", list(overrides))


@pytest.mark.parametrize("name", PUBLISHED_CLUSTERS)
def test_each_olmo3_recipe_fits_its_published_cluster(name):
    cluster = ClusterShape.parse(PUBLISHED_CLUSTERS[name])
    result = plan_rl(recipe(name), cluster)
    assert result.problems == []
    nodes = place(rl_needs(recipe(name), gpus=True), cluster)
    assert nodes is not None and len(nodes) == cluster.nodes
    # Learner ranks first, one GPU each, so they fill the first nodes.
    assert nodes[0][0] == "learner rank 0"
    print("\n".join(result.report[:4]))


def test_think_7b_on_one_node_is_refused_naming_the_shortfall_and_a_plan_that_fits():
    result = plan_rl(recipe("think_7b"), ClusterShape.parse("1x8:80"))
    (problem,) = result.problems
    print(problem)
    assert "needs 72 GPUs (16 for 16 learner ranks + 56 for 56 rollout engines)" in problem
    assert "has 8" in problem
    suggestion = problem.rsplit("this would fit: ", 1)[1].split()
    assert plan_rl(recipe("think_7b", *suggestion), ClusterShape.parse("1x8:80")).problems == []


def test_a_learner_that_does_not_fit_is_refused_with_settings_that_do():
    no_checkpointing = "learner.strategy.activation_checkpointing=false"
    short = "rollout.max_response_tokens=2048"  # so a 4,096-token micro-batch holds a sequence
    (problem,) = plan_rl(recipe("instruct_7b", no_checkpointing, short), NINE_NODES).problems
    print(problem)
    assert problem.startswith("a learner rank needs")
    assert "learner.strategy.activation_checkpointing=true" in problem
    smaller = problem.split("learner.micro_batch_tokens=")[1].split(";")[0]
    fixed = recipe("instruct_7b", no_checkpointing, short, f"learner.micro_batch_tokens={smaller}")
    assert plan_rl(fixed, NINE_NODES).problems == []
    # Think 7B's 34,816-token sequences cannot shrink the micro-batch enough: no such advice.
    (think,) = plan_rl(recipe("think_7b", no_checkpointing), NINE_NODES).problems
    assert "micro_batch_tokens" not in think and "activation_checkpointing=true" in think


def test_an_engine_whose_weights_do_not_fit_is_refused_with_more_tensor_parallelism():
    cfg = recipe("think_32b", "rollout.tensor_parallel_size=1", "rollout.num_actors=8")
    problems = plan_rl(cfg, ClusterShape.parse("16x8:40")).problems
    engine = next(p for p in problems if p.startswith("a rollout engine GPU"))
    assert engine.endswith("Would fit: rollout.tensor_parallel_size=2")


class StartsNothing:
    """RLCluster's reservation and actor start-up, recorded instead of run."""

    def __init__(self, monkeypatch, gpus_per_node: list[int], gpu_gib: float | None):
        import olmorl.rl.cluster as cluster_module
        from olmorl.plan import preflight

        self.started: list[str] = []
        monkeypatch.setattr(cluster_module, "cluster_uses_gpus", lambda: True)
        monkeypatch.setattr(preflight, "gpus_per_node", lambda: gpus_per_node)
        monkeypatch.setattr(preflight, "gpu_memory_gib", lambda timeout_s, resources: gpu_gib)
        monkeypatch.setattr(
            cluster_module, "reserve", lambda needs, timeout_s: self.started.append("reserve")
        )
        monkeypatch.setattr(
            cluster_module.RLCluster, "_start", lambda cluster, names: self.started.append("actors")
        )
        self.cluster_class = cluster_module.RLCluster


def test_an_rl_run_that_would_run_out_of_gpu_memory_stops_before_anything_starts(monkeypatch):
    from olmorl.ray_init import ClusterTooSmall

    run = StartsNothing(monkeypatch, [8] * 9, 80.0)
    too_big = recipe("instruct_7b", "learner.strategy.activation_checkpointing=false")
    with pytest.raises(ClusterTooSmall) as refused:
        run.cluster_class(too_big, ["math"])
    message = str(refused.value)
    print(message)
    assert message.startswith("this run would run out of GPU memory: a learner rank needs")
    assert "learner.strategy.activation_checkpointing=true" in message
    assert "--cluster 9x8:80" in message
    assert run.started == []  # nothing reserved, no actor
    # The published recipe fits the same cluster and goes on to start.
    run.cluster_class(recipe("instruct_7b"), ["math"])
    assert run.started == ["reserve", "actors"]


def test_a_run_whose_gpus_cannot_be_measured_goes_on_unchecked_saying_so(monkeypatch, capsys):
    run = StartsNothing(monkeypatch, [8] * 9, None)
    run.cluster_class(recipe("instruct_7b", "learner.strategy.activation_checkpointing=false"), [])
    assert run.started == ["reserve", "actors"]
    assert (
        "GPU memory not checked: no GPU of the cluster could be measured" in capsys.readouterr().err
    )


def test_sliding_layers_hold_only_their_window_in_the_kv_cache():
    full = ModelShape(**{**OLMO3_7B.__dict__, "sliding_window": None})
    context = 32768
    ratio = kv_cache_bytes(OLMO3_7B, 1, context, 1) / kv_cache_bytes(full, 1, context, 1)
    assert ratio == pytest.approx((8 * context + 24 * 4096) / (32 * context))


def test_cluster_shapes():
    assert ClusterShape.parse("8x8:80") == ClusterShape(8, 8, 80.0)
    assert ClusterShape.parse("2x4") == ClusterShape(2, 4, 80.0)
    for bad in ("8x", "0x8", "8*8", "8x8:big"):
        with pytest.raises(ValueError, match="NODESxGPUS"):
            ClusterShape.parse(bad)


def test_the_command_prints_the_plan_and_exits_1_when_it_does_not_fit():
    fits = CliRunner().invoke(app, ["plan", f"{RECIPES}/think_7b.yaml", "--cluster", "9x8:80"])
    assert fits.exit_code == 0 and "node 8: " in fits.output and fits.output.endswith("fits\n")
    refused = CliRunner().invoke(app, ["plan", f"{RECIPES}/think_7b.yaml", "--cluster", "1x8"])
    assert refused.exit_code == 1 and "does not fit: this run needs 72 GPUs" in refused.output


def measured_step_peak(preset: str, tokens: int, chunk: int) -> tuple[int, ModelShape]:
    """Peak live bytes over building a float32 model and two learner steps on one `tokens`-long
    row (sdpa, the chunked head, AdamW), as one float32 learner rank runs them."""
    with PeakLiveBytes() as memory:
        model = build_tiny_model(preset, vocab_size=1024, seed=0)
        model.set_attn_implementation("sdpa")
        use_chunked_head(model, chunk)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        input_ids = torch.randint(0, 1024, (1, tokens), generator=torch.Generator().manual_seed(0))
        mask = torch.arange(tokens)[None] > 0  # position 0 has no prediction
        for _ in range(2):
            scores = model(input_ids=input_ids, use_cache=False)
            loss, _ = masked_nll_loss(scores.logprobs, mask, tokens - 1)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return memory.peak, ModelShape.from_config(model.config)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_the_learner_estimate_is_within_a_quarter_of_the_measured_peak(preset):
    tokens, chunk = 2048, 256
    peak, shape = measured_step_peak(preset, tokens, chunk)
    setup = LearnerSetup(tokens, world_size=1, compute_bytes=4, chunk_tokens=chunk)
    estimate = sum(learner_bytes(shape, setup).values())
    print(f"{preset}: measured {peak / 2**20:.0f} MiB, estimate {estimate / 2**20:.0f} MiB")
    assert 0.75 <= estimate / peak <= 1.25

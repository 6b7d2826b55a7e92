"""`olmorl bench rl` runs its modes end to end on the tiny model and reports each of them."""

from pathlib import Path

import pytest

from olmorl.bench.rl import bench_rl, format_modes
from olmorl.config import RLConfig, load_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]


def bench_config(tiny_model_dir, *overrides: str) -> RLConfig:
    """The tiny benchmark recipe on the session's tiny model."""
    return load_config(
        RLConfig,
        REPO / "recipes" / "tiny" / "bench_rl.yaml",
        [
            f"model.path={tiny_model_dir}",
            f"data.train=[{REPO / 'recipes/tiny/data/target_token.jsonl'}]",
            *overrides,
        ],
    )


def test_modes_run_and_report(ray_cluster, tiny_model_dir):
    cfg = bench_config(tiny_model_dir, "rollout.max_response_tokens=48", "algo.prompts_per_step=4")
    results = bench_rl(cfg, ["sync", "async+inflight"], steps=2, shortest=4, alpha=1.2)
    print("\n" + format_modes(results))
    assert [r.mode for r in results] == ["sync", "async+inflight"]
    for r in results:
        assert r.tokens > 0 and r.seconds > 0
        assert 0.0 <= r.learner_idle <= 1.0 and 0.0 < r.engine_busy <= 1.0


def test_weight_sync_bench_pushes_by_both_transports(ray_cluster, tiny_model_dir):
    from olmorl.bench.weight_sync import bench_weight_sync

    results = bench_weight_sync(bench_config(tiny_model_dir), pushes=2)
    print("\n" + "\n".join(f"{r.name}: {r.per_s / 1e6:.0f} MB/s" for r in results))
    assert [r.name.split(" (")[0] for r in results] == [
        "plain copy",
        "file push to 1 engine(s)",
        "broadcast push to 1 engine(s)",
    ]
    # Every side moves the same bytes: the model's, twice.
    assert all(r.count == results[0].count > 0 and r.seconds > 0 for r in results)


def test_learner_bench_trains_the_same_rows_on_both_sides(ray_cluster, tiny_model_dir):
    from olmorl.bench.learner import bench_learner
    from olmorl.bench.table import format_table

    cfg = bench_config(
        tiny_model_dir, "learner.num_workers=1", "algo.prompts_per_step=4", "algo.group_size=4"
    )
    results = bench_learner(cfg, steps=2)
    print("\n" + format_table(results, unit="tokens"))
    assert [r.name for r in results] == ["plain loop (1 process)", "olmorl learners (1 rank)"]
    assert results[0].count == results[1].count > 0  # the same loss tokens, twice
    assert all(r.seconds > 0 for r in results)

"""What a run asks of the Ray cluster, the message when the cluster is too small, the GPU/CPU
decision, and each learner rank's one GPU: all without starting Ray."""

from pathlib import Path

import pytest

from olmorl.config import DPOConfig, RLConfig, SFTConfig, load_config
from olmorl.learner.device import LearnerDeviceError, cuda_index
from olmorl.placement import rl_needs, trainer_needs, uses_gpus

RECIPES = Path(__file__).parents[2] / "recipes"


def rl(name: str, *overrides: str) -> RLConfig:
    return load_config(RLConfig, RECIPES / name, list(overrides))


def test_tiny_recipe_on_cpu_asks_one_cpu_per_actor_and_no_gpu():
    needs = rl_needs(rl("tiny/rl_target_token.yaml"), gpus=False)
    # 2 learner ranks + 1 engine, one logical CPU each (what the actors asked for before).
    assert (needs.needed("CPU"), needs.needed("GPU")) == (3, 0)
    assert needs.bundles() == [{"CPU": 1}] * 3
    assert needs.shortfall({"CPU": 8}) is None


def test_tiny_recipe_on_gpu_asks_one_gpu_per_rank_and_tp_per_engine():
    cfg = rl("tiny/rl_target_token.yaml", "rollout.num_actors=2", "rollout.tensor_parallel_size=2")
    needs = rl_needs(cfg, gpus=True)
    assert needs.needed("GPU") == 2 * 1 + 2 * 2
    assert needs.bundles() == [{"CPU": 1, "GPU": 1}] * 2 + [{"CPU": 1, "GPU": 2}] * 2
    # Learners take the first bundles, engines the next ones.
    assert [needs.bundle_index("learner", r) for r in range(2)] == [0, 1]
    assert [needs.bundle_index("engine", i) for i in range(2)] == [2, 3]
    with pytest.raises(IndexError):
        needs.bundle_index("engine", 2)


@pytest.mark.parametrize(
    ("recipe", "gpus"),
    [
        ("olmo3/think_7b.yaml", 16 + 56),
        ("olmo3/instruct_7b.yaml", 8 + 56 + 4),  # + the judge's 4 (tensor parallel 4)
        ("olmo3/rl_zero_math_7b.yaml", 8 + 64),
        ("olmo3/think_32b.yaml", 64 + 20 * 8),
    ],
)
def test_olmo3_rl_recipes_need_their_published_gpu_counts(recipe, gpus):
    needs = rl_needs(rl(recipe), gpus=True)
    assert needs.needed("GPU") == gpus
    assert len(needs.bundles()) == sum(g.count for g in needs.groups)


@pytest.mark.parametrize(
    ("config_class", "recipe", "gpus"),
    [(SFTConfig, "olmo3/sft_think_7b.yaml", 64), (DPOConfig, "olmo3/dpo_think_7b.yaml", 16)],
)
def test_olmo3_offline_recipes_need_a_gpu_per_learner_rank(config_class, recipe, gpus):
    cfg = load_config(config_class, RECIPES / recipe)
    assert trainer_needs(cfg.learner, gpus=True).needed("GPU") == gpus


def test_a_32b_run_on_one_node_names_everything_missing_in_one_message():
    needs = rl_needs(rl("olmo3/think_32b.yaml"), gpus=True)
    message = needs.shortfall({"CPU": 128, "GPU": 8}, largest_node_gpus=8)
    assert message == (
        "this run needs 224 GPUs (64 for 64 learner ranks + 160 for 20 rollout engines × TP 8) "
        "and the Ray cluster has 8. Lower learner.num_workers, rollout.num_actors or "
        "rollout.tensor_parallel_size, or run on a larger Ray cluster (`ray job submit`, or "
        "RAY_ADDRESS naming it)"
    )


def test_gpus_and_cpus_short_together_are_one_message():
    needs = rl_needs(rl("olmo3/instruct_7b.yaml"), gpus=True)
    message = needs.shortfall({"CPU": 16, "GPU": 8})
    assert message.startswith(
        "this run needs 68 GPUs (8 for 8 learner ranks + 56 for 56 rollout engines + 4 for the "
        "judge server) and the Ray cluster has 8; this run needs 65 CPUs (8 for 8 learner ranks "
        "+ 56 for 56 rollout engines + 1 for the judge server) and the Ray cluster has 16."
    )
    assert "verifiers.judge_server.num_gpus" in message


def test_enough_gpus_spread_too_thin_for_one_engine_is_a_shortfall():
    # 16 GPUs in all, but an engine's 8 must share one node and no node has more than 4.
    cfg = rl("tiny/rl_target_token.yaml", "learner.num_workers=8", "rollout.tensor_parallel_size=8")
    needs = rl_needs(cfg, gpus=True)
    assert needs.shortfall({"CPU": 64, "GPU": 16}) is None
    message = needs.shortfall({"CPU": 64, "GPU": 16}, largest_node_gpus=4)
    assert message.startswith(
        "each rollout engine needs its 8 GPUs on one node and the cluster's largest node has 4."
    )


def test_a_judge_asking_for_a_gpu_on_a_cpu_cluster_fails_fast():
    # Before, the judge's actor waited for a GPU that a CPU cluster never has.
    cfg = rl("tiny/rl_target_token.yaml", "verifiers.judge_server.model=models/tiny")
    message = rl_needs(cfg, gpus=False).shortfall({"CPU": 8})
    assert message.startswith(
        "this run needs 1 GPU (1 for the judge server) and the Ray cluster has 0. "
        "Lower verifiers.judge_server.num_gpus,"
    )


@pytest.mark.parametrize(
    ("resources", "expected"),
    [({"CPU": 2.0}, False), ({"CPU": 2.0, "GPU": 0.0}, False), ({"CPU": 16.0, "GPU": 8.0}, True)],
)
def test_gpu_or_cpu_is_decided_by_the_cluster_not_the_driver(resources, expected):
    assert uses_gpus(resources) is expected


def test_reserve_stops_before_any_actor_when_the_cluster_is_short(monkeypatch):
    import ray

    from olmorl.ray_init import ClusterTooSmall, reserve

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 8.0})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"GPU": 8.0}}])

    def no_placement_group(*args, **kwargs):
        raise AssertionError("nothing may be reserved for a run that cannot fit")

    import importlib

    module = importlib.import_module("ray.util.placement_group")  # not ray.util's function
    monkeypatch.setattr(module, "placement_group", no_placement_group)
    with pytest.raises(ClusterTooSmall, match="needs 224 GPUs"):
        reserve(rl_needs(rl("olmo3/think_32b.yaml"), gpus=True), timeout_s=1)


def test_a_reservation_interrupted_while_waiting_is_removed(monkeypatch):
    import importlib

    import ray

    from olmorl.ray_init import reserve

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 8.0})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"GPU": 8.0}}])
    removed = []

    class Group:
        def ready(self):
            return "ready-ref"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    module = importlib.import_module("ray.util.placement_group")
    monkeypatch.setattr(module, "placement_group", lambda bundles, strategy: Group())
    monkeypatch.setattr(module, "remove_placement_group", removed.append)
    monkeypatch.setattr(ray, "get", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reserve(rl_needs(rl("tiny/rl_target_token.yaml"), gpus=True), timeout_s=5)
    assert len(removed) == 1


def test_cpu_runs_are_checked_not_reserved_and_ask_what_they_did_before(monkeypatch):
    import ray

    from olmorl.ray_init import reserve

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 8.0}}])
    placement = reserve(rl_needs(rl("tiny/rl_target_token.yaml"), gpus=False), timeout_s=1)
    assert placement.actor_options("learner", 1) == {"num_cpus": 1, "num_gpus": 0}
    assert placement.actor_options("engine", 0) == {"num_cpus": 1, "num_gpus": 0}
    placement.release()  # nothing held: a no-op


def test_start_up_waits_name_the_actors_that_did_not_start(monkeypatch):
    import ray

    from olmorl.ray_init import ActorStartTimeout, wait_started

    refs = {"rollout engine 0": object(), "rollout engine 1": object()}
    # Engine 0 is ready at once; engine 1 never is.
    calls = iter([([refs["rollout engine 0"]], [refs["rollout engine 1"]])])
    monkeypatch.setattr(ray, "wait", lambda pending, **kwargs: next(calls, ([], list(pending))))
    monkeypatch.setattr(ray, "get", lambda refs: None)
    with pytest.raises(ActorStartTimeout, match=r"^rollout engine 1 did not start within 5 s"):
        wait_started(refs, timeout_s=5)


@pytest.mark.parametrize(
    ("gpu_ids", "visible", "index"),
    [
        (["3"], "3", 0),  # Ray isolated the rank: its GPU is the only one it sees
        ([3], None, 3),  # no isolation, nothing hidden: the physical index
        (["3"], "2,3", 1),  # no isolation, a node started with some GPUs hidden
    ],
)
def test_a_rank_trains_on_the_gpu_ray_gave_it(gpu_ids, visible, index):
    assert cuda_index(gpu_ids, visible, rank=0) == index


@pytest.mark.parametrize("gpu_ids", [[], ["0", "1"]])
def test_a_rank_without_exactly_one_gpu_is_an_error(gpu_ids):
    with pytest.raises(LearnerDeviceError, match=f"rank 2 was given {len(gpu_ids)} GPUs"):
        cuda_index(gpu_ids, "0,1", rank=2)


def test_a_learner_worker_on_a_gpu_run_asserts_its_one_gpu(monkeypatch, tiny_model_dir):
    import ray

    from olmorl.config import LearnerConfig, ModelConfig
    from olmorl.learner.worker import LearnerWorker

    worker = LearnerWorker(1, 2, ModelConfig(path=str(tiny_model_dir)), LearnerConfig(), gpus=1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: ["5"])
    assert worker._cuda_index() == 0
    monkeypatch.setattr(ray, "get_gpu_ids", list)
    with pytest.raises(LearnerDeviceError, match="learner rank 1 was given 0 GPUs"):
        worker._cuda_index()
    on_cpu = LearnerWorker(0, 1, ModelConfig(path=str(tiny_model_dir)), LearnerConfig(), gpus=0)
    assert on_cpu._cuda_index() is None


def test_a_cluster_whose_start_fails_kills_the_actors_it_created(monkeypatch):
    """On CPU nothing is reserved, so releasing the reservation stops no actor: the engines
    created before the failure must be killed, or a shared cluster keeps their CPUs."""
    import olmorl.rl.cluster as cluster_module

    killed, released = [], []

    class FakeReservation:
        def release(self):
            released.append(True)

    def start_two_engines_then_fail(self, verifier_names):
        self.rollout_actors = ["engine-0", "engine-1"]
        raise RuntimeError("learner set-up failed")

    monkeypatch.setattr(cluster_module, "reserve", lambda needs, timeout_s: FakeReservation())
    monkeypatch.setattr(cluster_module, "cluster_uses_gpus", lambda: False)
    monkeypatch.setattr(cluster_module.RLCluster, "_start", start_two_engines_then_fail)
    monkeypatch.setattr(cluster_module.ray, "kill", killed.append)
    with pytest.raises(RuntimeError, match="learner set-up failed"):
        cluster_module.RLCluster(rl("tiny/rl_target_token.yaml"), ["contains"])
    assert killed == ["engine-0", "engine-1"] and released == [True]


def test_custom_resources_pin_actors_and_a_cluster_without_them_is_refused_naming_them():
    from olmorl.ray_init import Reservation

    cfg = rl(
        "tiny/rl_target_token.yaml",
        "learner.ray_resources={learner_node: 1}",
        "rollout.ray_resources={engine_node: 1}",
    )
    needs = rl_needs(cfg, gpus=False)
    assert needs.bundles() == [{"CPU": 1, "learner_node": 1}] * 2 + [{"CPU": 1, "engine_node": 1}]
    reservation = Reservation(needs)
    assert reservation.actor_options("engine", 0) == {
        "num_cpus": 1,
        "num_gpus": 0,
        "resources": {"engine_node": 1},
    }
    assert needs.shortfall({"CPU": 8, "learner_node": 4, "engine_node": 1}) is None
    problem = needs.shortfall({"CPU": 8, "learner_node": 4})
    print(problem)
    assert problem.startswith(
        "this run needs 1 of the custom resource 'engine_node' (1 for the rollout engine) and "
        "the Ray cluster has 0"
    )
    assert "Lower rollout.num_actors" in problem
    node = {"CPU": 4, "engine_node": 1}
    assert needs.group("engine").fits_on(node) and not needs.group("learner").fits_on(node)


@pytest.mark.parametrize("key", ["learner", "rollout"])
def test_ray_resources_name_custom_resources_only(key):
    from olmorl.config.loading import ConfigError

    with pytest.raises(ConfigError, match="GPU cannot be a custom resource"):
        rl("tiny/rl_target_token.yaml", f"{key}.ray_resources={{GPU: 1}}")

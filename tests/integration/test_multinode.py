"""Two Ray nodes on one machine, as two machines of a cluster: the head holds the custom resource
`learner_node`, a second node started with `ray start` holds `engine_node`, and the tiny RL
recipe asks its learner ranks and its engine for them (`learner.ray_resources`,
`rollout.ray_resources`). The engines' node is killed mid-run: the run stops naming that node and
the checkpoint
to resume from; a new node with the engines' resource joins, and the run resumes onto it.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobs import logged_steps
from ray_nodes import REPO, RayNodes, ray_env

pytestmark = pytest.mark.integration

RUN = [
    "recipes/tiny/rl_target_token.yaml",
    "learner.ray_resources={learner_node: 1}",
    "rollout.ray_resources={engine_node: 1}",
    "algo.async_steps=0",
    "algo.active_sampling=false",  # a random model's groups are almost all zero-variance
    "algo.prompts_per_step=8",
    "algo.group_size=4",
    "eval.every=0",
]


def olmorl_rl(address: str, out: Path, name: str, *overrides: str) -> subprocess.Popen:
    """`olmorl rl` as a driver of its own, joining the cluster at `address`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "olmorl",
            "rl",
            *RUN,
            *overrides,
            f"run.output_dir={out}",
            f"run.name={name}",
        ],
        cwd=REPO,
        env={**ray_env(), "RAY_ADDRESS": address},
        stdout=(out / f"{name}.console").open("w"),
        stderr=subprocess.STDOUT,
    )


def test_the_engine_node_lost_mid_run_then_back_and_the_run_resumed_on_it(tiny_model_dir, tmp_path):
    cluster = RayNodes(tmp_path)
    out = tmp_path / "runs"
    out.mkdir()
    run = [f"model.path={tiny_model_dir}", "run.steps=10", "run.checkpoint_every=2"]
    try:
        cluster.head("--num-cpus=4", "--include-dashboard=false", '--resources={"learner_node": 2}')
        cluster.worker("engines", "--num-cpus=2", '--resources={"engine_node": 1}')
        nodes = cluster.alive_nodes(2)
        [learner_node] = [n for n, r in nodes.items() if "learner_node" in r]
        [engine_node] = [n for n, r in nodes.items() if "engine_node" in r]

        lost = olmorl_rl(cluster.gcs_address, out, "run", *run)
        deadline = time.monotonic() + 600
        while logged_steps(out / "run") < 3 and lost.poll() is None:
            assert time.monotonic() < deadline, "the run never reached step 3"
            time.sleep(0.1)
        placement = json.loads((out / "run" / "placement.json").read_text())
        cluster.kill_node("engines")
        assert lost.wait(timeout=300) != 0
        console = (out / "run.console").read_text()
        stopped = console[console.index("run stopped") :]
        print("\n" + stopped)
        newest = max((out / "run" / "checkpoints").glob("step_*"))
        # The kill lands while the engine generates (its replacement finds no node that could
        # hold it) or while the learner pushes weights to it (the push fails); either way the
        # message names the node and the checkpoint.
        assert f"(id {engine_node[:12]})" in stopped
        assert (
            "rollout engine 0 died with its node" in stopped
            and "no live node of the Ray cluster has what an engine asks for" in stopped
        ) or f"(id {engine_node[:12]}) has left the Ray cluster, with rollout engine 0" in stopped
        assert f"the last good checkpoint is {newest}; rerun with --resume" in stopped

        # Another machine with the engines' resource joins, and the run resumes onto it.
        cluster.worker("engines-again", "--num-cpus=2", '--resources={"engine_node": 1}')
        replacement = next(
            n for n in cluster.alive_nodes(2) if n not in (learner_node, engine_node)
        )
        resumed = olmorl_rl(cluster.gcs_address, out, "run", *run, "--resume")
        assert resumed.wait(timeout=600) == 0, (out / "run.console").read_text()[-3000:]
        placement_after = json.loads((out / "run" / "placement.json").read_text())
    finally:
        cluster.stop()
    print(json.dumps(placement), json.dumps(placement_after))
    for before_or_after, engines_on in ((placement, engine_node), (placement_after, replacement)):
        assert before_or_after["learner rank 0"]["node_id"] == learner_node
        assert before_or_after["learner rank 1"]["node_id"] == learner_node
        assert before_or_after["rollout engine 0"]["node_id"] == engines_on
    assert f"rollout engine 0 on node {replacement[:12]}" in (out / "run.console").read_text()
    steps = [
        json.loads(line)["step"]
        for line in (out / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(11))

"""`launch/submit.sh` (`ray job submit`) of the tiny SFT, DPO, pretraining and RL recipes against
a head started by `launch/ray_node.sh head` (ray_nodes.py): each runs to its end, and an RL job
submitted with --no-wait is followed with `ray job logs --follow`, stopped with `ray job stop`
and resumed from its last checkpoint with --resume.
"""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from ray_nodes import REPO, RayNodes, ray_env

pytestmark = pytest.mark.integration


def test_ray_job_submit_runs_follows_stops_and_resumes_the_recipes(tiny_model_dir, tmp_path):
    env = ray_env()
    cluster = RayNodes(tmp_path)
    # Started as a cluster's head is (launch/README.md), with the dashboard's job server.
    head = cluster.head("--num-cpus=4", "--include-dashboard=true")
    address = cluster.dashboard_address
    try:
        _wait_for_job_server(address, env, head, tmp_path / "head.log")
        out = tmp_path / "runs"
        # Every trainer logs a step 0: held-out metrics before training.
        for command, recipe in [
            ("sft", "recipes/tiny/sft_copy.yaml"),
            ("dpo", "recipes/tiny/dpo_copy.yaml"),
            ("pretrain", "recipes/tiny/pretrain.yaml"),
        ]:
            _submit(address, env, out, command, recipe, f"model.path={tiny_model_dir}")
            run = out / command
            steps = [
                json.loads(line)["step"]
                for line in (run / "metrics.jsonl").read_text().splitlines()
            ]
            assert steps == [0, 1, 2], command
            assert (run / "checkpoints" / "step_000002" / "model.safetensors").is_file(), command
            assert (run / "config.yaml").is_file(), command

        # An RL job submitted without waiting, followed, stopped once it has a checkpoint, and
        # resumed from it (launch/README.md's commands, as written there).
        rl = ("rl", "recipes/tiny/rl_math.yaml", f"model.path={tiny_model_dir}")
        submitted = _submit(address, env, out, *rl, "run.steps=500", "run.checkpoint_every=2",
                            no_wait=True)  # fmt: skip
        job_id = re.search(r"Job '(\S+)' submitted successfully", submitted).group(1)
        follow = subprocess.Popen(
            ["ray", "job", "logs", "--follow", job_id, "--address", address],
            env=env,
            stdout=(tmp_path / "follow.txt").open("w"),
            stderr=subprocess.STDOUT,
        )
        checkpoints = out / "rl" / "checkpoints"
        deadline = time.monotonic() + 540
        while not list(checkpoints.glob("step_*")):
            assert time.monotonic() < deadline, (tmp_path / "follow.txt").read_text()[-3000:]
            time.sleep(0.5)
        stop = _ray_job("stop", job_id, address, env)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert follow.wait(timeout=120) is not None  # --follow ends with the job
        followed = (tmp_path / "follow.txt").read_text()
        assert "placement: learner rank 0" in followed and "olmorl rl" in followed
        status = _ray_job("status", job_id, address, env).stdout
        assert f"Job '{job_id}' was stopped" in status, status
        newest = max(int(p.name.split("_")[1]) for p in checkpoints.glob("step_*"))
        _submit(address, env, out, *rl, f"run.steps={newest + 1}", "--resume")
        records = [
            json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()
        ]
        assert [r["step"] for r in records] == list(range(newest + 2))
    finally:
        cluster.stop()


def _ray_job(verb: str, job_id: str, address: str, env: dict) -> subprocess.CompletedProcess:
    """`ray job VERB JOB_ID` against the test's head, as launch/README.md runs it."""
    return subprocess.run(
        ["ray", "job", verb, job_id, "--address", address],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _submit(
    address: str, env: dict, out: Path, command: str, recipe: str, *overrides: str, no_wait=False
) -> str:
    """`launch/submit.sh [--no-wait] COMMAND RECIPE` for two steps (unless `overrides` say
    otherwise), into out/COMMAND; asserts it succeeded (or was submitted); returns its output."""
    for _ in range(5):
        submit = subprocess.run(
            [
                "bash",
                str(REPO / "launch" / "submit.sh"),
                *(["--no-wait"] if no_wait else []),
                command,
                recipe,
                "run.steps=2",
                f"run.name={command}",
                *overrides,
            ],
            env={**env, "RAY_ADDRESS": address, "OLMORL_OUTPUT_DIR": str(out)},
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
        # The dashboard answers before the head's job agent is up; the job was not submitted.
        if "No available agent to submit job" not in submit.stderr + submit.stdout:
            break
        time.sleep(5)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert ("submitted successfully" if no_wait else "succeeded") in submit.stdout
    return submit.stdout + submit.stderr


def _wait_for_job_server(
    address: str, env: dict, head: subprocess.Popen, log: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(
                f"ray start --head exited with {head.returncode}:\n{log.read_text()[-3000:]}"
            )
        probe = subprocess.run(
            ["ray", "job", "list", "--address", address], env=env, capture_output=True, check=False
        )
        if probe.returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"Ray's job server at {address} did not come up in {timeout} s")

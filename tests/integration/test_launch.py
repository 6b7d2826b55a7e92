"""`ray job submit` of the tiny RL, SFT and DPO recipes against a head started by
`launch/ray_node.sh head` (`ray start --head` from the repository's environment).

The head runs with `--block` in a child process, so stopping it stops exactly this head and
not the Ray cluster the other integration tests share.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_runs_rl_sft_dpo_and_pretrain_recipes(tiny_model_dir, tmp_path):
    bin_dir = Path(sys.executable).parent
    # A loopback-only head for this test: Ray's token authentication is switched off so the job
    # client needs no token (a real cluster keeps it on and hands the token to its clients).
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RAY_ADDRESS": "",
        "RAY_AUTH_MODE": "disabled",
    }
    dashboard = free_port()
    # Ray's unix sockets live under --temp-dir, and socket paths may not exceed ~107 bytes: a
    # pytest tmp_path is too deep, so the head gets a short directory of its own.
    ray_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    head_log = (tmp_path / "head.log").open("w")
    # Started as a cluster's head is (launch/README.md), on free ports and loopback only.
    head_env = {
        **env,
        "RAY_PORT": str(free_port()),
        "RAY_DASHBOARD_PORT": str(dashboard),
        "RAY_DASHBOARD_HOST": "127.0.0.1",
    }
    head = subprocess.Popen(
        [
            str(REPO / "launch" / "ray_node.sh"),
            "head",
            "--block",
            "--num-cpus=4",
            "--include-dashboard=true",
            # The session's other Ray cluster (integration tests before this one) holds the
            # default agent ports; a head whose agent cannot bind accepts no jobs.
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--temp-dir={ray_dir}",
        ],
        env=head_env,
        stdout=head_log,
        stderr=subprocess.STDOUT,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for_job_server(address, env, head, tmp_path / "head.log")
        out = tmp_path / "runs"
        # Every trainer logs a step 0: held-out metrics before training.
        jobs = [
            ("rl", "recipes/tiny/rl_math.yaml", [0, 1, 2]),
            ("sft", "recipes/tiny/sft_copy.yaml", [0, 1, 2]),
            ("dpo", "recipes/tiny/dpo_copy.yaml", [0, 1, 2]),
            ("pretrain", "recipes/tiny/pretrain.yaml", [0, 1, 2]),
        ]
        for command, recipe, logged_steps in jobs:
            _submit(address, env, out, command, recipe, f"model.path={tiny_model_dir}")
            run = out / command
            steps = [
                json.loads(line)["step"]
                for line in (run / "metrics.jsonl").read_text().splitlines()
            ]
            assert steps == logged_steps, command
            assert (run / "checkpoints" / "step_000002" / "model.safetensors").is_file(), command
            assert (run / "config.yaml").is_file(), command
        # Resuming a submitted run (launch/README.md): the same command with --resume and a
        # longer run continues from its last checkpoint.
        _submit(
            address, env, out, "rl", "recipes/tiny/rl_math.yaml", f"model.path={tiny_model_dir}",
            "run.steps=3", "--resume",
        )  # fmt: skip
        records = [
            json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()
        ]
        assert [r["step"] for r in records] == [0, 1, 2, 3]
    finally:
        head.terminate()
        head.wait(timeout=90)
        head_log.close()
        shutil.rmtree(ray_dir, ignore_errors=True)


def _submit(address: str, env: dict, out: Path, command: str, recipe: str, *overrides: str):
    """`launch/submit.sh COMMAND RECIPE` for two steps, into out/COMMAND; asserts it succeeded."""
    for _ in range(5):
        submit = subprocess.run(
            [
                "bash",
                str(REPO / "launch" / "submit.sh"),
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
    assert "succeeded" in submit.stdout


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

"""launch/: the scripts parse, the manifests are well-formed and name what exists, and the
KubeRay job's cluster fits its recipe by the planner. `ray_node.sh head` and `submit.sh` run for
real in tests/integration/test_launch.py; SLURM and Kubernetes are not here to run the rest."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from olmorl.config import RLConfig, load_config
from olmorl.plan.planner import ClusterShape, plan_rl

LAUNCH = Path(__file__).parents[2] / "launch"
REPO = LAUNCH.parent


@pytest.mark.parametrize("script", ["ray_node.sh", "submit.sh", "slurm.sbatch", "bench_gpu.sh"])
def test_scripts_parse_and_are_executable(script):
    path = LAUNCH / script
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    assert path.stat().st_mode & 0o111


def test_ray_node_refuses_an_unknown_role():
    run = subprocess.run(
        ["bash", str(LAUNCH / "ray_node.sh"), "leader"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 2 and "role must be head or worker" in run.stderr


def test_slurm_script_starts_ray_on_every_node_and_submits_the_job():
    text = (LAUNCH / "slurm.sbatch").read_text()
    assert "#SBATCH --gpus-per-node=8" in text
    assert 'ray_node.sh" head --block' in text and 'ray_node.sh" worker "$head_ip" --block' in text
    assert '"$repo/launch/submit.sh" "$@"' in text and 'ray" stop' in text


def test_cluster_launcher_installs_and_starts_ray_from_the_repository():
    config = yaml.safe_load((LAUNCH / "ray_cluster.yaml").read_text())
    assert config["provider"]["type"] == "local"
    assert any("scripts/install.sh" in c for c in config["setup_commands"])
    assert any("launch/ray_node.sh head" in c for c in config["head_start_ray_commands"])
    assert any(
        "launch/ray_node.sh worker $RAY_HEAD_IP" in c for c in config["worker_start_ray_commands"]
    )
    assert len(config["provider"]["worker_ips"]) == config["min_workers"]


def test_kuberay_job_runs_a_shipped_recipe_on_a_cluster_it_fits():
    job = yaml.safe_load((LAUNCH / "kuberay_rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    words = job["spec"]["entrypoint"].split()
    recipe = words[words.index("rl") + 1]
    overrides = [w for w in words[words.index("rl") + 2 :] if "=" in w]
    cfg = load_config(RLConfig, REPO / recipe, overrides)
    (workers,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    cluster = ClusterShape(workers["replicas"], int(limits["nvidia.com/gpu"]), 80.0)
    assert plan_rl(cfg, cluster).problems == []
    assert cfg.run.output_dir == "/runs"


def test_a_gpu_install_with_a_cpu_torch_fails_saying_how_to_fix_it():
    """What `OLMORL_TARGET=gpu bash scripts/install.sh` runs after installing; this venv's torch
    is the CPU build."""
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_gpu_torch.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 1
    assert (
        "OLMORL_TARGET=gpu but torch 2.13.0+cpu in this venv is built without CUDA" in check.stderr
    )
    assert "pip install --force-reinstall torch==2.13.0 --index-url" in check.stderr

"""`olmorl rl` through the real stack: Ray, vLLM, FSDP2 learners on gloo, the verifiers.

The target-token flow is the learning test: after a short SFT from a random initialisation, RL
must teach a tiny Olmo3 to write the one word of 32 its prompt names, on held-out phrasings.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import torch
from jobs import kill_session, logged_steps
from safetensors.torch import load_file

from olmorl.config import ModelConfig, RLConfig, RolloutConfig, load_config
from olmorl.config.flow import FlowConfig
from olmorl.flow import run_flow
from olmorl.rl.loop import run_rl
from olmorl.rollout.engine import RolloutEngine
from verifiers.contains import contains_word

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
HELD_OUT = "recipes/tiny/data/target_token_eval.jsonl"


def run_recipe(recipe: str, model_dir: Path, out: Path, *overrides: str, resume: bool = False):
    cfg = load_config(
        RLConfig,
        REPO / "recipes" / "tiny" / recipe,
        [f"model.path={model_dir}", f"run.output_dir={out}", "run.name=run", *overrides],
    )
    data = cfg.data.model_copy(update={"train": [str(REPO / p) for p in cfg.data.train]})
    held_out = cfg.eval.model_copy(update={"data": [str(REPO / p) for p in cfg.eval.data]})
    cfg = cfg.model_copy(update={"data": data, "eval": held_out})
    return run_rl(cfg, out / "run", resume)


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.metrics.read_text().splitlines()]


@pytest.fixture(scope="module")
def target_token_flow(ray_cluster, tiny_model_dir, tmp_path_factory):
    """The README's main command, `olmorl flow recipes/tiny/flow_target_token.yaml`: a short SFT
    from the random tiny model, then 120 RL steps; the stages' results."""
    flow = load_config(FlowConfig, REPO / "recipes/tiny/flow_target_token.yaml")
    sft = flow.stages[0].model_copy(update={"overrides": [f"model.path={tiny_model_dir}"]})
    flow = flow.model_copy(update={"stages": [sft, *flow.stages[1:]]})
    with contextlib.chdir(REPO):  # the recipes name their data relative to the repository
        return run_flow(flow, tmp_path_factory.mktemp("flow"), say=lambda _: None)


@pytest.fixture(scope="module")
def target_token_run(target_token_flow):
    return target_token_flow[-1].run


def target_word_rates(checkpoint: Path, rows: list[dict], samples: int) -> tuple[float, float]:
    """Sampled at temperature 1 with transformers (not the training stack): the share of
    responses holding the word the prompt asks for, and the share holding any other target."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    own = other = 0
    for row in rows:
        prompt = tokenizer.apply_chat_template(
            row["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = model.generate(
                **prompt,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=8,
                num_return_sequences=samples,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        for ids in out[:, prompt["input_ids"].shape[1] :]:
            text = tokenizer.decode(ids, skip_special_tokens=True)
            own += contains_word(text, row["ground_truth"])
            other += any(contains_word(text, w) for w in row["forbidden_words"])
    total = len(rows) * samples
    return own / total, other / total


def test_the_policy_writes_the_word_its_held_out_prompt_names(target_token_flow):
    """Prompt dependence on phrasings no stage trained on, for the SFT start and the RL end."""
    rows = [json.loads(line) for line in (REPO / HELD_OUT).read_text().splitlines()]
    sft, rl = (stage.checkpoint for stage in target_token_flow)
    torch.manual_seed(0)
    sft_own, sft_other = target_word_rates(sft, rows, samples=8)
    rl_own, rl_other = target_word_rates(rl, rows, samples=8)
    print(
        f"\nheld-out prompts, share of samples with the prompted word / with another target "
        f"word: after SFT {sft_own:.2f} / {sft_other:.2f}, after RL {rl_own:.2f} / {rl_other:.2f}"
    )
    # Writing any word but the prompted one scores 0, so only reading the prompt pays. A policy
    # that ignores the prompt names the right word 1 time in 32. The last two assertions say RL,
    # not the warm start, got there (after SFT: about 0.42 / 0.46).
    assert rl_own >= 0.8
    assert rl_other <= 0.1
    assert rl_own >= sft_own + 0.3
    assert rl_other <= sft_other - 0.2


def test_held_out_reward_is_logged_and_rises(target_token_run):
    evals = {r["step"]: r for r in records(target_token_run) if "eval/reward" in r}
    assert sorted(evals) == list(range(0, 121, 30))  # step 0, every 30 steps, the end
    first, last = evals[0]["eval/reward"], evals[120]["eval/reward"]
    print(
        f"\nheld-out reward (phrasings never trained on): step 0 {first:.2f}, step 120 {last:.2f}"
    )
    # A run: 0.41 at step 0 (after SFT), 0.90 at step 120.
    assert last >= 0.7 and last >= first + 0.3
    assert evals[120]["eval/prompts"] == 64 and "eval/pass@1" in evals[120]


def test_olmorl_eval_of_the_last_checkpoint_agrees_with_the_runs_last_evaluation(
    ray_cluster, target_token_run
):
    from olmorl.rl.eval_job import evaluate_checkpoint

    cfg = load_config(
        RLConfig,
        target_token_run.run_dir / "config.yaml",
        [f"model.path={target_token_run.checkpoints[-1]}"],
    )
    with contextlib.chdir(REPO):
        offline = evaluate_checkpoint(cfg)
    in_run = next(r for r in records(target_token_run) if r["step"] == 120)
    # 512 samples at temperature 1 on each side, unseeded on CPU: the means differ by sampling
    # noise alone (standard deviation of the difference at most 0.03).
    assert abs(offline["eval/reward"] - in_run["eval/reward"]) <= 0.12
    assert offline["eval/prompts"] == in_run["eval/prompts"] == 64


def test_rl_changed_every_parameter(target_token_flow):
    sft, rl = (stage.checkpoint for stage in target_token_flow)
    before = load_file(sft / "model.safetensors")
    after = load_file(rl / "model.safetensors")
    assert before.keys() == after.keys()
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert unchanged == []


def test_run_outputs(target_token_run):
    run_dir = target_token_run.run_dir
    assert target_token_run.plot.stat().st_size > 0
    assert "clip_high: 0.272" in (run_dir / "config.yaml").read_text()
    # A step that trained carries the learner's metrics as well as the batch statistics.
    record = next(r for r in reversed(records(target_token_run)) if r["groups_trained"] > 0)
    for key in (
        "reward/contains",
        "response_tokens",
        "truncation_rate",
        "clip_low_fraction",
        "logprob_mismatch",
        "mismatch_kl",
        "tis_capped_fraction",
        "entropy",
        "time/step",
        "tokens_per_s",
        "groups_filtered",
    ):
        assert key in record, key
    assert [p.name for p in target_token_run.checkpoints] == [
        "step_000040",
        "step_000080",
        "step_000120",
    ]
    assert not list(run_dir.glob("checkpoints/.tmp-*"))


def test_checkpoint_loads_in_transformers_and_vllm(ray_cluster, target_token_run):
    from transformers import AutoModelForCausalLM

    from olmorl.algo import token_logprobs

    checkpoint = target_token_run.checkpoints[-1]
    sequence = list(range(30, 90))
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    with torch.no_grad():
        ids = torch.tensor([sequence])
        expected = token_logprobs(model(input_ids=ids).logits, ids, 1.0)[0]
    rollout = RolloutConfig(
        gpu_memory_utilization=0.1, max_num_seqs=4, max_response_tokens=8, enforce_eager=True
    )
    engine = (
        ray.remote(RolloutEngine)
        .options(num_cpus=1)
        .remote(ModelConfig(path=str(checkpoint), dtype="float32"), rollout, 128, 0)
    )
    try:
        ray.get(engine.start.remote())
        got = torch.tensor(ray.get(engine.prompt_logprobs.remote(sequence)))
    finally:
        ray.get(engine.shutdown.remote())
        ray.kill(engine)
    diff = float((got - expected).abs().max())
    print(f"\ncheckpoint: max |vLLM - transformers| logprob {diff:.2e}")
    assert diff < 1e-4


def test_mixed_run_logs_reward_per_verifier(ray_cluster, tiny_model_dir, tmp_path):
    """All four reward families in one run (the judge a vLLM server the run starts), with two
    mini-batches, synchronous sampling and offline wandb."""
    result = run_recipe(
        "rl_mixed.yaml",
        tiny_model_dir,
        tmp_path,
        "data.train=[recipes/tiny/data/mixed.jsonl, recipes/tiny/data/judge.jsonl]",
        "run.steps=4",
        f"verifiers.judge_server.model={tiny_model_dir}",
        "verifiers.judge_server.num_gpus=0",
        "verifiers.judge_server.dtype=float32",
        "verifiers.judge_server.max_model_len=1024",
        "verifiers.judge_server.gpu_memory_utilization=0.1",
        "verifiers.judge_server.extra_args=[--enforce-eager]",
        "verifiers.options.judge.structured_output=true",
        "verifiers.options.judge.max_tokens=16",
        "algo.num_mini_batches=2",
        "algo.filter_zero_variance=false",
        "algo.async_steps=0",  # synchronous: each step's verifier calls are its own batch's
        "run.wandb.enabled=true",
        "run.wandb.mode=offline",
    )
    logged = records(result)
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    # 4 steps × 8 prompts is one epoch of the 32 rows, so every verifier scored its 8 rows.
    for name in ("math", "code", "ifeval", "judge"):
        steps = [r for r in logged if f"reward/{name}" in r]
        assert all(0.0 <= r[f"reward/{name}"] <= 1.0 for r in steps), name
        assert sum(r[f"verifier/{name}/calls"] for r in steps) == 8 * 4, name
        assert (
            sum(r[f"verifier/{name}/failures"] + r[f"verifier/{name}/timeouts"] for r in steps) == 0
        )
    # A judge that answered and sandboxes that ran leave nothing masked as unscored.
    assert all(r["responses_unscored"] == 0 for r in logged)
    # Two optimizer steps per rollout batch: the policy version advances by two each step.
    assert [r["policy_version"] for r in logged] == [2, 4, 6, 8]
    assert list((result.run_dir / "wandb").glob("offline-run-*"))


def test_a_killed_run_resumes_with_the_same_prompts_in_the_same_order(
    ray_cluster, tiny_model_dir, tmp_path
):
    from olmorl.rl.prompts import PromptSampler

    # Synchronous, without resampling: step k trains on the seeded sampler's k-th 8 prompts, so
    # the sampler itself is the reference for the killed and the resumed run alike.
    settings = [
        "run.steps=6",
        "run.checkpoint_every=3",
        "algo.async_steps=0",
        "algo.active_sampling=false",  # a random model's groups are almost all zero-variance
        "algo.prompts_per_step=8",
        "algo.group_size=4",
    ]
    # The job as a process of its own, with its own Ray, SIGKILLed once step 4 is logged:
    # step 3's checkpoint is then the newest, and step 4 was trained but never saved. Its model
    # directory does not exist: the recipe's preset writes it, as for a newcomer's first run.
    killed = tmp_path / "killed" / "run"
    console = (tmp_path / "console.txt").open("wb")
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "olmorl",
            "rl",
            "recipes/tiny/rl_target_token.yaml",
            f"model.path={tmp_path / 'models' / 'tiny'}",
            f"run.output_dir={killed.parent}",
            "run.name=run",
            *settings,
        ],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        stdout=console,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not logged_steps(killed) >= 4 and job.poll() is None:
            assert time.monotonic() < deadline, "the job never reached step 4"
            time.sleep(0.1)
    finally:
        kill_session(job.pid)
    assert job.wait(timeout=60) == -signal.SIGKILL
    assert logged_steps(killed) < 6, "the job finished before it could be killed"
    # The console shows the run's own lines and warnings; vLLM's INFO lines went to logs/.
    console.close()
    vllm_info = re.compile(r"\bINFO \d\d-\d\d ")
    shown = (tmp_path / "console.txt").read_text(errors="replace")
    assert "actor logs (vLLM, Ray, learners)" in shown
    assert (
        f"writing a random tiny Olmo3 and its tokenizer to {tmp_path / 'models' / 'tiny'}" in shown
    )
    assert not vllm_info.search(shown), shown[:2000]
    assert vllm_info.search((killed / "logs" / "engine-0.log").read_text(errors="replace"))
    print(f"\nconsole of the killed job: {len(shown.splitlines())} lines")

    resumed = run_recipe(
        "rl_target_token.yaml", tiny_model_dir, tmp_path / "killed", *settings, resume=True
    )
    assert resumed.resumed_from == 3

    def steps(run_dir: Path) -> dict[int, list[int]]:
        log = [json.loads(line) for line in (run_dir / "data_log.jsonl").read_text().splitlines()]
        return {r["step"]: r["prompts"] for r in log}

    rows = len((REPO / "recipes/tiny/data/target_token.jsonl").read_text().splitlines())
    drawn = PromptSampler(rows, seed=0).take(6 * 8)
    reference = {step: drawn[8 * (step - 1) : 8 * step] for step in range(1, 7)}
    again = steps(killed)
    # The resumed run replaced the dead attempt's log lines after step 3 with its own.
    lines = (killed / "data_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    print({step: sorted(p) for step, p in again.items()})
    for step in range(1, 7):  # 1-3 from before the kill, 4-6 after the resume
        assert sorted(again[step]) == sorted(reference[step]), step


def test_a_rollout_engine_killed_mid_run_is_replaced_and_no_prompt_is_lost(
    ray_cluster, tiny_model_dir, tmp_path
):
    import threading
    from collections import Counter

    from olmorl.rl.prompts import PromptSampler

    steps, per_step = 6, 8
    run_dir = tmp_path / "run"
    killed: list[int] = []

    def kill_the_engine_after_step_2() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if logged_steps(run_dir) >= 2:
                # Ray titles actor processes `ray::<Class>...`; this run's engine is the only one
                # (earlier tests' engines are gone by now).
                engines = [
                    int(proc.parent.name)
                    for proc in Path("/proc").glob("[0-9]*/cmdline")
                    if _read(proc).startswith(b"ray::RolloutEngine")
                ]
                assert len(engines) == 1, engines
                os.kill(engines[0], signal.SIGKILL)  # a crash: no shutdown, no goodbye
                killed.append(engines[0])
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_engine_after_step_2, daemon=True)
    killer.start()
    result = run_recipe(
        "rl_target_token.yaml",
        tiny_model_dir,
        tmp_path,
        f"run.steps={steps}",
        "algo.async_steps=0",
        "algo.active_sampling=false",  # a random model's groups are almost all zero-variance
        f"algo.prompts_per_step={per_step}",
        "algo.group_size=4",
    )
    killer.join()
    assert killed, "the engine was never killed"
    log = [r for r in records(result) if r["step"] >= 1]
    assert sum(r["engine_failures"] for r in log) == 1
    assert [r["step"] for r in log] == list(range(1, steps + 1))
    trained = [
        p
        for line in (result.run_dir / "data_log.jsonl").read_text().splitlines()
        for p in json.loads(line)["prompts"]
    ]
    rows = len((REPO / "recipes/tiny/data/target_token.jsonl").read_text().splitlines())
    # Nothing lost, nothing trained twice: exactly the sampler's first steps x per_step prompts.
    assert Counter(trained) == Counter(PromptSampler(rows, seed=0).take(steps * per_step))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process is gone
        return b""

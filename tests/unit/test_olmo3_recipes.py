"""The Olmo 3 recipes against the published figures (../shared/design.md §3: the technical report's
Tables 48 and 49, the SFT and base-stage figures), written out once here."""

from pathlib import Path

import pytest

from olmorl.config import DPOConfig, PretrainConfig, RLConfig, SFTConfig, load_config
from olmorl.placement import rl_needs

RECIPES = Path(__file__).parents[2] / "recipes" / "olmo3"

# RL (Table 49): start checkpoint, data, LR, steps, max response, prompts x group, mini-batches,
# TIS cap, learner GPUs, rollout GPUs (engines x tensor parallel), async steps.
RL_FIGURES = {
    "think_7b": ("allenai/Olmo-3-7B-Think-DPO", ["allenai/Dolci-Think-RL-7B"],
                 1e-6, 1400, 32768, 64, 8, 1, None, 16, 56, 1),
    "think_32b": ("allenai/Olmo-3-32B-Think-DPO", ["allenai/Dolci-Think-RL-32B"],
                  2e-6, 750, 32768, 128, 8, 1, 2.0, 64, 160, 8),
    "instruct_7b": ("allenai/Olmo-3-7B-Instruct-DPO", ["allenai/Dolci-Instruct-RL"],
                    1e-6, 450, 8192, 64, 8, 4, None, 8, 56, 8),
    **{
        f"rl_zero_{domain.lower()}_7b": (
            "allenai/Olmo-3-1025-7B", [f"allenai/Dolci-RL-Zero-{domain}-7B"],
            1e-6, 2000, 16384, 32, 8, 1, 2.0, 8, 64, 8,
        )
        for domain in ("Math", "Code", "IF", "General")
    },
    "rl_zero_mix_7b": ("allenai/Olmo-3-1025-7B",
                       [f"allenai/Dolci-RL-Zero-{d}-7B" for d in ("Math", "Code", "IF", "General")],
                       1e-6, 2000, 16384, 32, 8, 1, 2.0, 8, 64, 8),
}  # fmt: skip
# The verifier each RL-Zero set's rows get (the sets name none per row).
RL_ZERO_VERIFIERS = {"Math": "math", "Code": "code", "IF": "ifeval", "General": "judge"}
# DPO (Table 48): start, data, LR; all dpo_norm, beta 5, one epoch, 128 pairs, 10% warm-up, linear.
DPO_FIGURES = {
    "dpo_think_7b": ("allenai/Olmo-3-7B-Think-SFT", ["allenai/Dolci-Think-DPO-7B"], 8e-8),
    "dpo_instruct_7b": ("allenai/Olmo-3-7B-Instruct-SFT", ["allenai/Dolci-Instruct-DPO"], 1e-6),
    "dpo_think_32b": ("allenai/Olmo-3-32B-Think-SFT", ["allenai/Dolci-Think-DPO-32B"], 7e-8),
}
# SFT: data, LR; all from the midtrained base, 1M-token batches, 2 epochs, 32K sequences.
SFT_FIGURES = {
    "sft_think_7b": (["allenai/Dolci-Think-SFT-7B"], 5e-5),
    "sft_instruct_7b": (["allenai/Dolci-Instruct-SFT"], 8e-5),
}
# Base stages (7B): tokens, context, LR (peak, or the start of the linear decay).
BASE_FIGURES = {
    "pretrain_7b": (5.93e12, 8192, 3e-4),
    "midtrain_7b": (100e9, 8192, 2.07e-4),
    "long_context_7b": (50e9, 65536, 2.07e-4),
}


def test_every_olmo3_recipe_is_in_a_table():
    tables = {**RL_FIGURES, **DPO_FIGURES, **SFT_FIGURES, **BASE_FIGURES, "flow_7b": None}
    assert {p.stem for p in RECIPES.glob("*.yaml")} == set(tables)


@pytest.mark.parametrize("name", RL_FIGURES)
def test_rl_recipe_carries_the_published_figures(name):
    (start, data, lr, steps, response, prompts, group, mini_batches, tis, learner_gpus,
     rollout_gpus, async_steps) = RL_FIGURES[name]  # fmt: skip
    cfg = load_config(RLConfig, RECIPES / f"{name}.yaml")
    assert (cfg.model.path, cfg.data.train, cfg.learner.lr, cfg.run.steps) == (
        start, data, lr, steps
    )  # fmt: skip
    assert (cfg.rollout.max_response_tokens, cfg.algo.prompts_per_step, cfg.algo.group_size) == (
        response, prompts, group
    )  # fmt: skip
    assert (cfg.algo.num_mini_batches, cfg.algo.tis_cap, cfg.algo.async_steps) == (
        mini_batches, tis, async_steps
    )  # fmt: skip
    assert cfg.learner.num_workers == learner_gpus
    assert cfg.rollout.num_actors * cfg.rollout.tensor_parallel_size == rollout_gpus
    # Every run: temperature 1, clip 0.2 / 0.272, no KL term, constant LR, 2,048-token prompts.
    assert (cfg.rollout.temperature, cfg.algo.clip_low, cfg.algo.clip_high) == (1.0, 0.2, 0.272)
    assert cfg.learner.lr_schedule == "constant" and cfg.data.max_prompt_tokens == 2048
    needs = rl_needs(cfg, gpus=True)
    judge = cfg.verifiers.judge_server.num_gpus if cfg.verifiers.judge_server else 0
    assert needs.needed("GPU") == learner_gpus + rollout_gpus + judge


@pytest.mark.parametrize("name", [n for n in RL_FIGURES if n.startswith("rl_zero")])
def test_rl_zero_recipes_prompt_in_plain_text_and_name_each_sets_verifier(name):
    cfg = load_config(RLConfig, RECIPES / f"{name}.yaml")
    assert cfg.data.prompt_format == "plain"
    assert cfg.data.source_verifiers == {
        source: RL_ZERO_VERIFIERS[source.split("-")[-2]] for source in cfg.data.train
    }
    # RL-Zero rewards code by its pass rate; Think and Instruct need every test to pass.
    if "allenai/Dolci-RL-Zero-Code-7B" in cfg.data.train:
        assert cfg.verifiers.options["code"]["all_or_nothing"] is False
    uses_judge = "allenai/Dolci-RL-Zero-General-7B" in cfg.data.train
    assert (cfg.verifiers.judge_server is not None) == uses_judge


@pytest.mark.parametrize("name", DPO_FIGURES)
def test_dpo_recipe_carries_the_published_figures(name):
    start, data, lr = DPO_FIGURES[name]
    cfg = load_config(DPOConfig, RECIPES / f"{name}.yaml")
    assert (cfg.model.path, cfg.data.train, cfg.learner.lr) == (start, data, lr)
    assert (cfg.loss.kind, cfg.loss.beta, cfg.train.epochs, cfg.train.pairs_per_step) == (
        "dpo_norm", 5.0, 1, 128
    )  # fmt: skip
    assert (cfg.learner.lr_schedule, cfg.learner.warmup_fraction) == ("linear", 0.1)


@pytest.mark.parametrize("name", SFT_FIGURES)
def test_sft_recipe_carries_the_published_figures(name):
    data, lr = SFT_FIGURES[name]
    cfg = load_config(SFTConfig, RECIPES / f"{name}.yaml")
    assert (cfg.model.path, cfg.data.train, cfg.learner.lr) == ("allenai/Olmo-3-1025-7B", data, lr)
    assert (cfg.train.tokens_per_step, cfg.train.epochs, cfg.data.max_tokens) == (2**20, 2, 32768)


@pytest.mark.parametrize("name", BASE_FIGURES)
def test_base_stage_recipe_carries_the_published_figures(name):
    tokens, context, lr = BASE_FIGURES[name]
    cfg = load_config(PretrainConfig, RECIPES / f"{name}.yaml")
    trained = cfg.run.steps * cfg.train.tokens_per_step
    assert abs(trained - tokens) / tokens < 1e-3, trained
    assert max(seq_len for _, seq_len in cfg.length_phases) == context
    assert cfg.learner.lr == lr

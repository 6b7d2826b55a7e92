"""Every shipped recipe loads and validates."""

from pathlib import Path

import pytest

from olmorl.config import DPOConfig, PretrainConfig, RLConfig, SFTConfig, load_config
from olmorl.config.flow import FlowConfig
from olmorl.flow import STAGE_CONFIGS

REPO = Path(__file__).parents[2]
RECIPES = sorted((Path(__file__).parents[2] / "recipes").rglob("*.yaml"))


def test_recipes_exist():
    assert {p.parent.name for p in RECIPES} >= {"tiny", "olmo3"}


def config_class(path: Path):
    """Recipes are named by trainer: pretrain*, midtrain*, long_context* (the base stages),
    sft_*, dpo_*, flow_*; anything else is RL."""
    prefix = path.stem.split("_")[0]
    return {
        "pretrain": PretrainConfig,
        "midtrain": PretrainConfig,
        "long": PretrainConfig,
        "sft": SFTConfig,
        "dpo": DPOConfig,
        "flow": FlowConfig,
    }.get(prefix, RLConfig)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_validates(path):
    cfg = load_config(config_class(path), path)
    if isinstance(cfg, FlowConfig):
        for stage in cfg.stages:
            assert isinstance(
                load_config(STAGE_CONFIGS[stage.kind], REPO / stage.recipe),
                (STAGE_CONFIGS[stage.kind]),
            )
    elif isinstance(cfg, PretrainConfig):
        if path.parent.name == "tiny":  # olmo3 recipes name token arrays the user makes
            local = [s.path for s in cfg.data.sources] + cfg.data.eval
            assert all((path.parents[2] / source).is_file() for source in local), local
    elif config_class(path) is not RLConfig:
        local = [s for s in cfg.data.train + cfg.data.eval if not s.startswith("allenai/")]
        assert all((path.parents[2] / source).is_file() for source in local), local
    elif path.parent.name == "olmo3":
        # Table 49 holds these in every Olmo 3 RL run.
        assert (cfg.algo.group_size, cfg.algo.clip_low, cfg.algo.clip_high) == (8, 0.2, 0.272)
        assert cfg.rollout.temperature == 1.0 and cfg.data.max_prompt_tokens == 2048
    else:
        for source in cfg.data.train:
            assert (path.parents[2] / source).is_file(), source

"""Every shipped recipe loads and validates."""

from pathlib import Path

import pytest

from olmorl.config import RLConfig, load_config

RECIPES = sorted((Path(__file__).parents[2] / "recipes").rglob("*.yaml"))


def test_recipes_exist():
    assert {p.parent.name for p in RECIPES} >= {"tiny", "olmo3"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_validates(path):
    cfg = load_config(RLConfig, path)
    if path.parent.name == "olmo3":
        # Table 49 holds these in every Olmo 3 RL run.
        assert (cfg.algo.group_size, cfg.algo.clip_low, cfg.algo.clip_high) == (8, 0.2, 0.272)
        assert cfg.rollout.temperature == 1.0 and cfg.data.max_prompt_tokens == 2048
    else:
        for source in cfg.data.train:
            assert (path.parents[2] / source).is_file(), source

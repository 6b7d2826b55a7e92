"""Long-context extension: YaRN on the full-attention layers of an Olmo3 checkpoint, plain RoPE
kept on the sliding-window layers, in the config and in the rotary tables transformers builds."""

import json

import pytest
import torch

from olmorl.models.yarn import LongContextError, write_yarn_checkpoint, yarn_config


def test_only_the_full_attention_layers_get_yarn(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    extended = yarn_config(config, 4.0)
    rope = extended["rope_parameters"]
    assert rope["full_attention"] == {
        "rope_type": "yarn",
        "rope_theta": config["rope_parameters"]["full_attention"]["rope_theta"],
        "factor": 4.0,
        "original_max_position_embeddings": config["max_position_embeddings"],
    }
    assert rope["sliding_attention"] == config["rope_parameters"]["sliding_attention"]
    assert extended["max_position_embeddings"] == 4 * config["max_position_embeddings"]
    assert config["rope_parameters"]["full_attention"]["rope_type"] == "default"  # not mutated


def test_a_flat_rope_config_is_split_by_layer_type():
    config = {
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "max_position_embeddings": 100,
    }
    rope = yarn_config(config, 2.0)["rope_parameters"]
    assert rope["sliding_attention"] == {"rope_type": "default", "rope_theta": 10000.0}
    assert rope["full_attention"]["rope_type"] == "yarn" and rope["full_attention"]["factor"] == 2


@pytest.mark.parametrize(
    ("config", "factor", "message"),
    [
        ({"layer_types": ["full_attention"], "max_position_embeddings": 8}, 1.0, "above 1"),
        ({"layer_types": ["sliding_attention"], "max_position_embeddings": 8}, 2.0, "no full"),
        (
            {
                "layer_types": ["full_attention"],
                "rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 2.0}},
                "max_position_embeddings": 8,
            },
            2.0,
            "already use 'yarn'",
        ),
    ],
)
def test_bad_extensions_are_refused(config, factor, message):
    with pytest.raises(LongContextError, match=message):
        yarn_config(config, factor, "ckpt/config.json")


def test_transformers_scales_the_full_layers_rope_and_not_the_sliding_ones(
    tiny_model_dir, tmp_path
):
    from transformers import AutoModelForCausalLM

    extended = write_yarn_checkpoint(tiny_model_dir, tmp_path / "yarn", 2.0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).model.rotary_emb
    yarn = AutoModelForCausalLM.from_pretrained(extended).model.rotary_emb
    assert torch.equal(base.sliding_attention_inv_freq, yarn.sliding_attention_inv_freq)
    assert yarn.sliding_attention_attention_scaling == 1.0
    # YaRN interpolates the low frequencies by the factor and keeps the highest ones.
    ratio = yarn.full_attention_inv_freq / base.full_attention_inv_freq
    assert ratio[0] == pytest.approx(1.0) and ratio[-1] == pytest.approx(0.5)
    assert yarn.full_attention_attention_scaling > 1.0

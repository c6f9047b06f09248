# Copyright 2026 The trl-perception Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Every shipped recipe parses into the training script's dataclasses, and the CLI dispatches."""

from pathlib import Path

import pytest

from trl_perception.cli import _subtract_subsequence, main
from trl_perception.scripts.train import load_perception_dataset, make_parser, resolve_reward, two_proportion_test


RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_is_a_recipe_per_paper_task_and_a_quickstart():
    names = {p.stem for p in RECIPES}
    assert {"quickstart", "grounding_refcoco", "counting_pixmo", "ocr_pageocr", "detection_coco"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_and_names_registered_rewards(recipe, tmp_path):
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        # GPU recipes ask for bf16, which this CPU-only test machine cannot validate.
        ["--config", str(recipe), "--output_dir", str(tmp_path), "--bf16", "false"]
    )
    assert script_args.reward_funcs and model_args.model_name_or_path
    for name in script_args.reward_funcs:
        reward = resolve_reward(name, (script_args.reward_kwargs or {}).get(name))
        assert callable(reward)
    # Algorithm hyper-parameters whose TRL defaults changed across versions are explicit in every recipe.
    text = recipe.read_text()
    for key in ("beta:", "temperature:", "loss_type:", "learning_rate:", "num_generations:"):
        assert key in text, f"{recipe.name} must set {key}"


def test_quickstart_dataset_loads_both_splits(tmp_path):
    train = load_perception_dataset(
        "synthetic_shapes", "train", "counting", num_train=8, num_test=4, cache_dir=tmp_path
    )
    test = load_perception_dataset("synthetic_shapes", "test", "counting", num_train=8, num_test=4, cache_dir=tmp_path)
    assert (len(train), len(test)) == (8, 4)
    with pytest.raises(ValueError, match="has no .dataset_config."):
        load_perception_dataset("coco_detection", "train", "some-config")


def test_unknown_rewards_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown reward 'nope'"):
        resolve_reward("nope", None)
    with pytest.raises(ValueError, match="options apply only to registered rewards"):
        resolve_reward("trl.rewards.think_format_reward", {"x": 1})


def test_two_proportion_test_matches_hand_computation():
    # 60/200 -> 100/200: pooled p = 0.4, se = sqrt(0.4 * 0.6 * 2 / 200) = 0.04899, z = 0.2 / 0.04899 = 4.0825
    result = two_proportion_test(60, 100, 200)
    assert result["z"] == pytest.approx(4.0825, abs=1e-3)
    assert result["p_value"] == pytest.approx(2.23e-5, rel=0.02)
    assert two_proportion_test(50, 50, 100)["p_value"] == pytest.approx(0.5)


def test_cli_help_rewards_and_unknown_command(capsys):
    assert main([]) == 0
    assert "train" in capsys.readouterr().out
    assert main(["rewards"]) == 0
    assert "iou_squared" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2


def test_subtract_subsequence_keeps_order():
    argv = ["--config", "x.yaml", "--num_processes", "2", "--max_steps", "2"]
    assert _subtract_subsequence(argv, ["--num_processes", "2"]) == ["--config", "x.yaml", "--max_steps", "2"]

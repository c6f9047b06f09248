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
"""Every shipped recipe parses into the training script's dataclasses and agrees with the model-family layer, every
paper task has a Qwen3-VL recipe with the paper's hyper-parameters, and the CLI dispatches."""

import re
from pathlib import Path

import pytest

from trl_perception.cli import _subtract_subsequence, main
from trl_perception.families import AUTO, get_family, resolve_frame
from trl_perception.scripts.train import (
    build_rewards,
    load_perception_dataset,
    make_parser,
    resolve_reward,
    two_proportion_test,
    validate_dataset,
)


RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
PAPER_TASKS = ["grounding_refcoco", "counting_pixmo", "ocr_pageocr", "detection_coco"]
# Hub ids of each family's checkpoints start like this (the recipes name Hub ids, which cannot be resolved offline).
HUB_PREFIXES = {
    "qwen2_vl": "Qwen/Qwen2-VL-",
    "qwen2_5_vl": "Qwen/Qwen2.5-VL-",
    "qwen3_vl": "Qwen/Qwen3-VL-",
    "qwen3_5": "Qwen/Qwen3.5-",
    "internvl": "OpenGVLab/InternVL",
}
# The algorithm: a Qwen3-VL recipe trains exactly as the paper recipe of its task.
ALGORITHM = ["beta", "temperature", "top_p", "top_k", "loss_type", "scale_rewards", "num_iterations", "learning_rate",
             "lr_scheduler_type", "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps",
             "max_completion_length", "num_train_epochs", "use_vllm", "vllm_mode"]  # fmt: skip


def parse(recipe, tmp_path, *extra):
    # GPU recipes ask for bf16, which this CPU-only test machine cannot validate.
    return make_parser().parse_args_and_config(
        ["--config", str(recipe), "--output_dir", str(tmp_path), "--bf16", "false", *extra]
    )


def recipe_family(script_args, training_args, model_args):
    """The family a recipe trains: `tiny:<family>`, else `model_family`, else `dataset_kwargs.family`."""
    model = model_args.model_name_or_path
    if model.startswith("tiny:"):
        return get_family(model.split(":", 1)[1])
    if training_args.model_family != AUTO:
        return get_family(training_args.model_family)
    family = (script_args.dataset_kwargs or {}).get("family")
    assert family not in (None, AUTO), "a recipe for a Hub checkpoint names its family (dataset_kwargs.family)"
    return get_family(family)


def test_there_is_a_recipe_per_paper_task_and_a_quickstart():
    names = {p.stem for p in RECIPES}
    assert {"quickstart", *PAPER_TASKS} <= names


def test_every_paper_task_has_a_qwen3_vl_recipe():
    names = {p.stem for p in RECIPES}
    assert {f"{task}_qwen3_vl" for task in PAPER_TASKS} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_and_names_registered_rewards(recipe, tmp_path):
    script_args, training_args, model_args = parse(recipe, tmp_path)
    assert script_args.reward_funcs and model_args.model_name_or_path
    for name in script_args.reward_funcs:
        reward = resolve_reward(name, (script_args.reward_kwargs or {}).get(name))
        assert callable(reward)
    # What the launcher checks before anything is loaded: reward options, builder name and loader arguments.
    rewards, warnings = build_rewards(script_args)
    assert len(rewards) == len(script_args.reward_funcs) and warnings == []
    splits = [script_args.dataset_train_split, script_args.dataset_test_split]
    validate_dataset(script_args.dataset_name, script_args.dataset_config, script_args.dataset_kwargs, splits)
    # Algorithm hyper-parameters whose TRL defaults changed across versions are explicit in every recipe.
    text = recipe.read_text()
    for key in ("beta:", "temperature:", "loss_type:", "learning_rate:", "num_generations:"):
        assert key in text, f"{recipe.name} must set {key}"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_agrees_with_the_family_layer(recipe, tmp_path):
    script_args, training_args, model_args = parse(recipe, tmp_path)
    family = recipe_family(script_args, training_args, model_args)
    model = model_args.model_name_or_path
    assert model.startswith("tiny:") or model.startswith(HUB_PREFIXES[family.name]), (model, family.name)
    # One family throughout: the trainer's, the prompts' and the rewards'.
    assert training_args.model_family in (AUTO, family.name)
    assert (script_args.dataset_kwargs or {}).get("family", AUTO) in (AUTO, family.name)
    for name in script_args.reward_funcs:
        options = (script_args.reward_kwargs or {}).get(name) or {}
        assert options.get("family", AUTO) in (AUTO, family.name), name
        if options.get("frame", AUTO) != AUTO:
            assert resolve_frame(options["frame"]) == family.box_frame, (name, options["frame"])
        for key in ("min_pixels", "max_pixels"):  # a reward's smart_resize budget is the processor's
            if key in options:
                assert options[key] == getattr(script_args, key), (name, key)
        reward, default = resolve_reward(name, options), resolve_reward(name, None)
        if not hasattr(reward, "geometry"):
            continue
        if len({default.geometry({"model_family": f}).frame.name for f in ("qwen2_5_vl", "qwen3_vl")}) == 1:
            continue  # frame-free (OCR text, an integer count): its frame does not follow the family
        assert reward.geometry({"model_family": family.name}).frame.name == family.box_frame, name
    # The processor's pixel budget: one the family's processor takes, inside the checkpoints' own range.
    if script_args.min_pixels is not None or script_args.max_pixels is not None:
        assert family.pixel_budget_keys is not None, f"{family.name} takes no pixel budget"
        for value in (script_args.min_pixels, script_args.max_pixels):
            assert value is None or family.min_pixels <= value <= family.max_pixels


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_qwen3_vl_recipe_is_the_paper_recipe_on_qwen3_vl(task, tmp_path):
    recipes = {p.stem: p for p in RECIPES}
    paper_script, paper_training, _ = parse(recipes[task], tmp_path)
    script_args, training_args, model_args = parse(recipes[f"{task}_qwen3_vl"], tmp_path)
    family = recipe_family(script_args, training_args, model_args)
    assert family.name == "qwen3_vl" and family.box_frame == "grid_1000"
    assert re.fullmatch(r"Qwen/Qwen3-VL-(2B|4B)-Instruct", model_args.model_name_or_path)
    for key in ALGORITHM:
        assert getattr(training_args, key) == getattr(paper_training, key), key
    assert script_args.reward_funcs == paper_script.reward_funcs
    for key in ("dataset_name", "dataset_config", "dataset_train_split", "dataset_train_limit"):
        assert getattr(script_args, key) == getattr(paper_script, key), key
    # Every option but the frame is the paper recipe's (a grid_1000 frame needs no resize budget).
    for name in script_args.reward_funcs:
        ours = dict((script_args.reward_kwargs or {}).get(name) or {})
        theirs = dict((paper_script.reward_kwargs or {}).get(name) or {})
        for options in (ours, theirs):
            for key in ("frame", "family", "min_pixels", "max_pixels"):
                options.pop(key, None)
        assert ours == theirs, name
    # The pixel budget is a whole number of merged 32 x 32 tokens.
    assert script_args.max_pixels % family.factor**2 == 0
    # The prompt text plus the longest image and completion fit vLLM's context.
    image_tokens = script_args.max_pixels // family.factor**2
    assert image_tokens + training_args.max_completion_length + 512 <= training_args.vllm_max_model_length


def test_chat_template_kwargs_parse_from_a_recipe(tmp_path):
    """Qwen3.5's no-thinking switch (docs/families.md) is a plain YAML mapping in a recipe."""
    recipe = tmp_path / "qwen3_5.yaml"
    recipe.write_text(
        "model_name_or_path: tiny:qwen3_5\ndataset_name: synthetic_shapes\nreward_funcs: [count_exact]\n"
        "chat_template_kwargs: {enable_thinking: false}\n"
    )
    _, training_args, _ = parse(recipe, tmp_path)
    assert training_args.chat_template_kwargs == {"enable_thinking": False}
    _, training_args, _ = parse(recipe, tmp_path, "--chat_template_kwargs", '{"enable_thinking": true}')
    assert training_args.chat_template_kwargs == {"enable_thinking": True}


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
    with pytest.raises(ValueError, match="Unknown option 'x' for reward 'trl.rewards.think_format_reward'"):
        resolve_reward("trl.rewards.think_format_reward", {"x": 1})
    with pytest.raises(ValueError, match="module 'trl.rewards' has no attribute 'think_format_rewar'"):
        resolve_reward("trl.rewards.think_format_rewar", None)
    with pytest.raises(ValueError, match="Cannot import the module of reward 'no_such_module.reward'"):
        resolve_reward("no_such_module.reward", None)


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

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
paper task has a Qwen3-VL recipe with the paper's hyper-parameters, recipes and accelerate configs resolve by name as
well as by path, `trl-perception recipes` lists and copies them, and the CLI dispatches."""

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from trl_perception import shipped_recipes
from trl_perception.cli import _resolve_accelerate_config, _subtract_subsequence, main
from trl_perception.families import AUTO, get_family, resolve_frame
from trl_perception.scripts.train import (
    build_rewards,
    load_perception_dataset,
    make_parser,
    resolve_config_argument,
    resolve_reward,
    two_proportion_test,
    validate_dataset,
)
from trl_perception.shipped_recipes import ACCELERATE_DIR, RECIPES_DIR


# The recipes live in the package (trl_perception/recipes), so that a pip install has them; in a clone, the top-level
# `recipes` is a symlink to that folder.
RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))
ACCELERATE_CONFIGS = sorted(ACCELERATE_DIR.glob("*.yaml"))
ROOT = Path(__file__).resolve().parents[1]
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


# -- shipped recipes, by name -----------------------------------------------------------------------------------------


def test_the_package_ships_the_recipes_and_accelerate_configs():
    assert RECIPES_DIR == Path(shipped_recipes.__file__).resolve().parent / "recipes"
    assert {"quickstart", *PAPER_TASKS} <= {p.stem for p in RECIPES}
    assert {"zero2", "zero2_cpu", "zero3"} <= {p.stem for p in ACCELERATE_CONFIGS}
    assert shipped_recipes.list_recipes() == [p.stem for p in RECIPES]
    assert shipped_recipes.list_accelerate_configs() == [p.stem for p in ACCELERATE_CONFIGS]
    # A bare name means one file: task recipes and accelerate configs never share a name.
    assert not set(shipped_recipes.list_recipes()) & set(shipped_recipes.list_accelerate_configs())


def test_a_clone_keeps_the_top_level_recipes_path():
    top = ROOT / "recipes"
    if not top.exists():  # an unpacked sdist has only the package's copy
        pytest.skip("not a clone: no top-level recipes/")
    assert top.resolve() == RECIPES_DIR
    assert (top / "quickstart.yaml").read_bytes() == (RECIPES_DIR / "quickstart.yaml").read_bytes()


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.stem)
def test_accelerate_configs_are_accelerate_configs(config):
    settings = yaml.safe_load(config.read_text())
    assert settings["distributed_type"] == "DEEPSPEED" and settings["deepspeed_config"]["zero_stage"] in (2, 3)
    assert settings["use_cpu"] is config.stem.endswith("_cpu")
    trl_config = resources.files("trl.accelerate_configs").joinpath(config.name)
    if trl_config.is_file():  # shipped under the name of one of TRL's configs, so it must mean the same
        assert settings == yaml.safe_load(trl_config.read_text())


def test_config_resolves_names_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped_recipes.recipe_path("quickstart") == str(RECIPES_DIR / "quickstart.yaml")
    # A file that exists wins over a shipped name.
    (tmp_path / "quickstart").write_text("model_name_or_path: tiny:qwen2_5_vl\n")
    assert shipped_recipes.recipe_path("quickstart") == "quickstart"
    assert shipped_recipes.recipe_path(str(RECIPES[0])) == str(RECIPES[0])
    # Both spellings of the flag, as the training script parses them.
    script_args, _, model_args = make_parser().parse_args_and_config(
        ["--config=grounding_refcoco", "--output_dir", str(tmp_path), "--bf16", "false"]
    )
    assert model_args.model_name_or_path == "Qwen/Qwen2-VL-2B-Instruct" and script_args.dataset_name == "refcoco"


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "quickstar",
            "--config 'quickstar' is neither a file nor a shipped recipe (did you mean `--config quickstart`?)",
        ),
        ("recipes/quickstart.yaml", "(the shipped one is `--config quickstart`)"),
        ("nothing-like-it", "Shipped recipes: counting_pixmo, "),
    ],
    ids=["typo", "clone-path-outside-a-clone", "unknown"],
)
def test_an_unknown_config_is_one_actionable_error_line(capsys, tmp_path, monkeypatch, value, message):
    monkeypatch.chdir(tmp_path)  # outside a clone: no recipes/ here
    assert main(["train", "--config", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trl-perception train: error: ") and len(err.strip().splitlines()) == 1
    assert message in err and "`trl-perception recipes` lists them" in err


def test_accelerate_config_resolves_shipped_trl_and_file_configs(tmp_path):
    assert _resolve_accelerate_config(["--accelerate_config", "zero2_cpu", "--num_processes", "2"]) == [
        "--config_file",
        str(ACCELERATE_DIR / "zero2_cpu.yaml"),
        "--num_processes",
        "2",
    ]
    fsdp = str(resources.files("trl.accelerate_configs").joinpath("fsdp2.yaml"))
    assert _resolve_accelerate_config(["--accelerate_config", "fsdp2"]) == ["--config_file", fsdp]
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: NO\n")
    # The recipe's value comes first, the command line's last: the command line wins.
    args = ["--accelerate_config", "zero3", "--accelerate_config", str(own)]
    assert _resolve_accelerate_config(args) == ["--config_file", str(own)]
    assert _resolve_accelerate_config(["--num_processes", "2"]) == ["--num_processes", "2"]
    with pytest.raises(FileNotFoundError, match=r"did you mean `--accelerate_config zero2_cpu`\?"):
        _resolve_accelerate_config(["--accelerate_config", "zero2cpu"])


@pytest.fixture
def launched(monkeypatch) -> list:
    """What `trl-perception train` would run, as parsed `accelerate launch` arguments (nothing is launched)."""
    from accelerate.commands.launch import launch_command_parser

    runs = []

    def launch(launch_argv, output_dir):
        runs.append(launch_command_parser().parse_args(launch_argv))
        return 0

    monkeypatch.setattr("trl_perception.cli._launch", launch)
    return runs


def test_train_launches_the_shipped_recipe_and_config_by_name(tmp_path, monkeypatch, launched):
    monkeypatch.chdir(tmp_path)
    argv = ["--config", "quickstart", "--accelerate_config", "zero2_cpu", "--num_processes", "2", "--max_steps", "1"]
    assert main(["train", *argv]) == 0
    (args,) = launched
    assert args.config_file == str(ACCELERATE_DIR / "zero2_cpu.yaml") and args.num_processes == 2
    # The training process is given the recipe's path, not its name.
    assert args.training_script_args[:2] == ["--config", str(RECIPES_DIR / "quickstart.yaml")]
    assert args.training_script_args[2:] == ["--max_steps", "1"]


def test_a_recipe_key_names_the_accelerate_config(tmp_path, launched):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((RECIPES_DIR / "quickstart.yaml").read_text() + "accelerate_config: zero2_cpu\n")
    assert main(["train", "--config", str(recipe), "--output_dir", str(tmp_path / "out")]) == 0
    assert launched[0].config_file == str(ACCELERATE_DIR / "zero2_cpu.yaml")


def test_recipes_command_lists_recipes_and_configs(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in [*shipped_recipes.list_recipes(), *shipped_recipes.list_accelerate_configs(), "fsdp2", "zero1"]:
        assert re.search(rf"\b{name}\b", out), name
    assert "quickstart                   tiny:qwen2_5_vl on synthetic_shapes" in out
    assert "trl-perception recipes copy quickstart" in out
    assert main(["recipes", "list"]) == 0
    assert capsys.readouterr().out == out


def test_recipes_command_shows_prints_the_path_and_copies(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["recipes", "show", "quickstart"]) == 0
    assert capsys.readouterr().out == (RECIPES_DIR / "quickstart.yaml").read_text()
    assert main(["recipes", "path", "accelerate/zero3"]) == 0
    assert capsys.readouterr().out == f"{ACCELERATE_DIR / 'zero3.yaml'}\n"

    assert main(["recipes", "copy", "quickstart"]) == 0
    assert "trl-perception train --config quickstart.yaml" in capsys.readouterr().out
    # Next to the copy, the bare name still means the shipped recipe, and says so.
    assert resolve_config_argument(["--config", "quickstart"]) == ["--config", str(RECIPES_DIR / "quickstart.yaml")]
    assert (
        "the file quickstart.yaml here is not used (pass --config quickstart.yaml for it)" in capsys.readouterr().err
    )
    assert resolve_config_argument(["--config", "quickstart.yaml"]) == ["--config", "quickstart.yaml"]
    assert (tmp_path / "quickstart.yaml").read_bytes() == (RECIPES_DIR / "quickstart.yaml").read_bytes()
    # A copy is not overwritten by accident; into a folder (created), under another name.
    (tmp_path / "quickstart.yaml").write_text("edited\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["recipes", "copy", "quickstart"])
    assert exit_info.value.code == 2 and "exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "quickstart.yaml").read_text() == "edited\n"
    assert main(["recipes", "copy", "quickstart", "--force"]) == 0
    assert (tmp_path / "quickstart.yaml").read_bytes() == (RECIPES_DIR / "quickstart.yaml").read_bytes()
    assert main(["recipes", "copy", "zero2_cpu", "configs/"]) == 0
    assert "--accelerate_config configs/zero2_cpu.yaml" in capsys.readouterr().out
    assert (tmp_path / "configs" / "zero2_cpu.yaml").is_file()
    assert main(["recipes", "copy", "detection_coco", "mine.yaml"]) == 0
    assert (tmp_path / "mine.yaml").read_bytes() == (RECIPES_DIR / "detection_coco.yaml").read_bytes()
    # The copy is a recipe like any other: train takes it by path.
    script_args, _, _ = parse(tmp_path / "mine.yaml", tmp_path)
    assert script_args.dataset_name == "coco_detection"

    with pytest.raises(SystemExit) as exit_info:
        main(["recipes", "copy", "quickstrat"])
    assert exit_info.value.code == 2 and "(did you mean 'quickstart'?)" in capsys.readouterr().err

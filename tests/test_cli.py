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
"""`trl-perception train` behaves like `trl grpo`: recipe merging, strict flags, validation before loading, one error
line per failure, user reward modules, `--version`, `--help` and the `rewards` listing."""

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import transformers
from packaging.version import Version

from trl_perception import __version__
from trl_perception.cli import main
from trl_perception.rewards import get_reward, list_rewards
from trl_perception.rewards._registry import reward_options
from trl_perception.scripts import train as train_script
from trl_perception.scripts.train import BUILDERS, make_parser, merge_dicts, validate_arguments
from trl_perception.shipped_recipes import RECIPES_DIR


ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(RECIPES_DIR / "quickstart.yaml")
DETECTION = str(RECIPES_DIR / "detection_coco.yaml")
# The GPU recipes ask for bf16 and colocated vLLM, which this CPU-only machine cannot validate.
CPU = ["--bf16", "false", "--use_vllm", "false"]


@pytest.fixture(autouse=True)
def no_launch(request, monkeypatch):
    """In-process tests check what happens before `accelerate launch`; launching would be a failure (and slow)."""
    if request.node.get_closest_marker("slow") is None:

        def launch(args, output_dir):
            raise AssertionError(f"accelerate launch was called with {args}")

        monkeypatch.setattr("trl_perception.cli._launch", launch)


def parse(*args: str):
    return make_parser().parse_args_and_config(list(args), fail_with_unknown_args=False)[:3]


def run_train(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["train", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- dict-valued options merge with the recipe -----------------------------------------------------------------------


def test_dataset_kwargs_on_the_command_line_merge_with_the_recipe():
    # The COCO command of docs/cli.md: only data_dir changes, the recipe's filters stay.
    script_args, _, _ = parse("--config", DETECTION, *CPU, "--dataset_kwargs", '{"data_dir": "/data/coco"}')
    assert script_args.dataset_kwargs == {
        "data_dir": "/data/coco",
        "family": "qwen2_5_vl",
        "crowd": "exclude",
        "min_objects": 1,
    }
    # null removes a key (the loader default applies); `--flag=value` works; repeated flags accumulate.
    script_args, _, _ = parse(
        "--config", DETECTION, *CPU, '--dataset_kwargs={"crowd": null}', "--dataset_kwargs", '{"min_objects": 2}'
    )
    assert script_args.dataset_kwargs == {"data_dir": "coco", "family": "qwen2_5_vl", "min_objects": 2}


def test_nested_reward_kwargs_and_trl_dict_options_merge():
    script_args, training_args, _ = parse(
        "--config",
        DETECTION,
        *CPU,
        "--reward_kwargs",
        '{"detection": {"preset": "vlm_r1"}}',
        "--model_init_kwargs",
        '{"device_map": "cpu"}',
    )
    # Recursive: the recipe's max_pixels survives next to the new preset.
    assert script_args.reward_kwargs == {"detection": {"preset": "vlm_r1", "max_pixels": 1000000}}
    assert training_args.model_init_kwargs == {"device_map": "cpu"}  # no recipe value: the flag's dict


def test_a_dict_option_given_a_non_json_value_replaces_as_in_trl(tmp_path):
    ds_config = tmp_path / "ds.json"
    ds_config.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto"}))
    # `deepspeed` is a dict-or-path field: a path is passed through untouched.
    args = make_parser().merge_dict_options(["--deepspeed", str(ds_config), "--max_steps", "3"])
    assert args == ["--deepspeed", str(ds_config), "--max_steps", "3"]


def test_merge_dicts():
    assert merge_dicts({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": None}) == {
        "a": 1,
        "b": {"d": 3, "e": 4},
    }


# -- strict flags -----------------------------------------------------------------------------------------------------


def test_flags_are_not_prefix_matched():
    parser = make_parser()
    assert parser.allow_abbrev is False
    *_, cli_remaining = parser.parse_args_and_config(
        ["--config", QUICKSTART, "--max_step", "3"], return_remaining_strings=True, separate_remaining_strings=True
    )
    assert cli_remaining == ["--max_step", "3"]  # not taken as --max_steps


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max_step", "3"], "Unknown option --max_step on the command line (did you mean --max_steps?)"),
        (["--num_process", "2"], "Unknown option --num_process on the command line (did you mean --num_processes?)"),
        (["--max_steps", "3", "oops"], "Unexpected argument 'oops' on the command line"),
        (["--num_processes", "two"], "--num_processes expects a positive integer, got 'two'"),
    ],
)
def test_unknown_flags_are_one_error_line(capsys, tmp_path, args, message):
    code, out, err = run_train(capsys, "--config", QUICKSTART, "--output_dir", str(tmp_path / "out"), *args)
    assert code == 2
    assert err.splitlines() == [err.strip()] and err.startswith("trl-perception train: error: ")
    assert message in err


def test_unknown_recipe_keys_are_reported_as_recipe_errors(capsys, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(Path(QUICKSTART).read_text() + "\nmax_step: 3\n")
    code, _, err = run_train(capsys, "--config", str(recipe))
    assert code == 2
    assert "Unknown option --max_step in the recipe (did you mean --max_steps?)" in err


# -- validation before anything is loaded ----------------------------------------------------------------------------

VALIDATION_ERRORS = {
    "unknown reward": (
        ["--reward_funcs", "count_exakt"],
        "Unknown reward 'count_exakt' (did you mean 'count_exact'?)",
    ),
    "unknown reward option": (
        ["--reward_kwargs", '{"count_exact": {"sorce": "answer"}}'],
        "Unknown option 'sorce' for reward 'count_exact' (did you mean 'source'?)",
    ),
    "bad option value": (
        ["--reward_kwargs", '{"count_exact": {"source": "guess"}}'],
        "Reward 'count_exact': source must be one of",
    ),
    "reward_kwargs for no reward": (
        ["--reward_kwargs", '{"count_exakt": {"source": "answer"}}'],
        "`reward_kwargs` names 'count_exakt', which is neither in `reward_funcs`",
    ),
    "options are not a dict": (["--reward_kwargs", '{"count_exact": 3}'], "`reward_kwargs['count_exact']` must be"),
    "same log name twice": (["--reward_funcs", "count_exact", "count_exact"], "both log as 'count_exact'"),
    "reward_weights length": (["--reward_weights", "1.0", "2.0"], "`reward_weights` has 2 values for 1 rewards"),
    "unimportable reward module": (["--reward_modules", "no_such_rewards"], "Cannot import reward module"),
    "dataset_kwargs typo": (
        ["--dataset_kwargs", '{"num_trian": 8}'],
        "Unknown `dataset_kwargs` key 'num_trian' for the 'synthetic_shapes' builder (did you mean 'num_train'?)",
    ),
    "dataset_kwargs split": (["--dataset_kwargs", '{"split": "train"}'], "`dataset_kwargs` sets `split`"),
    "dataset_kwargs not JSON": (["--dataset_kwargs", "{num_train: 8}"], "`dataset_kwargs` must be a JSON object"),
    "builder typo": (["--dataset_name", "synthetic_shape"], "Unknown dataset builder 'synthetic_shape'"),
    "builder without config": (
        ["--dataset_name", "coco_detection"],
        "The 'coco_detection' builder has no `dataset_config`",
    ),
    "missing dataset directory": (["--dataset_name", "./no/such/dir"], "no such directory exists"),
    "synthetic split": (["--dataset_test_split", "validation", "--heldout_samples", "4"], "not 'validation'"),
    "unknown tiny family": (["--model_name_or_path", "tiny:qwen9"], "Unknown model family 'qwen9'"),
    "unknown model_family": (["--model_family", "qwen9"], "Unknown model family 'qwen9'"),
    "option of another builder": (["--dataset_kwargs", '{"family": "qwen2_vl"}'], "key 'family' for the 'synthetic"),
    "missing checkpoint": (
        ["--model_name_or_path", str(ROOT / "no-such-checkpoint")],
        "Cannot read the configuration of",
    ),
}


@pytest.mark.parametrize("case", VALIDATION_ERRORS, ids=str)
def test_invalid_arguments_fail_in_the_launcher_with_one_line(capsys, tmp_path, monkeypatch, case):
    args, message = VALIDATION_ERRORS[case]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    out_dir = tmp_path / "out"
    code, _, err = run_train(capsys, "--config", QUICKSTART, "--output_dir", str(out_dir), *args)
    assert code == 2, err
    assert err.startswith("trl-perception train: error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err
    # Nothing was built or loaded: no tiny model, no dataset cache.
    assert not out_dir.exists() and not (tmp_path / "datasets").exists()


def test_a_builder_prompt_family_is_checked(capsys, tmp_path):
    args = ["--model_name_or_path", "tiny:qwen2_5_vl", "--dataset_kwargs", '{"family": "qwen9"}']
    code, _, err = run_train(capsys, "--config", DETECTION, *CPU, "--output_dir", str(tmp_path), *args)
    assert code == 2 and "Unknown model family 'qwen9'" in err


def test_the_training_process_validates_too(tmp_path):
    # `accelerate launch -m trl_perception.scripts.train ...` (no launcher): the same single error line, exit 2.
    with pytest.raises(SystemExit) as exit_info:
        train_script.cli_main(["--config", QUICKSTART, "--output_dir", str(tmp_path), "--reward_funcs", "nope"])
    assert exit_info.value.code == 2


def test_failed_validation_in_a_real_process_prints_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "trl_perception.cli", "train", "--config", QUICKSTART, "--max_step", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
        timeout=600,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "CalledProcessError" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("trl-perception train: error: Unknown option --max_step")


# -- rewards from the user's own module ------------------------------------------------------------------------------

USER_MODULE = '''
from trl_perception.rewards import get_reward, register_reward


@register_reward("cli_test_length")
def length_factory(scale: float = 1.0, name: str = "cli_test_length"):
    """Length of the completion times `scale`."""

    def reward(completions, **kwargs):
        return [scale * len(c) for c in completions]

    reward.__name__ = name
    return reward


def plain_length(completions, offset: float = 0.0, **kwargs):
    return [offset + len(c) for c in completions]


iou_1m = get_reward("iou_squared", max_pixels=1_000_000, name="iou_squared_1m")
'''


@pytest.fixture
def user_rewards(tmp_path, monkeypatch, isolated_registries):
    name = "cli_test_user_rewards"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)  # its registrations are rolled back by `isolated_registries`


def validate(*args: str):
    return validate_arguments(*parse("--config", QUICKSTART, *args))


def test_a_registered_user_reward_is_named_with_reward_modules(user_rewards):
    options = '{"cli_test_length": {"scale": 2.0}}'
    rewards, warnings = validate(
        "--reward_modules", user_rewards, "--reward_funcs", "cli_test_length", "--reward_kwargs", options
    )
    assert rewards[0](prompts=None, completions=["abc"]) == [6.0]
    assert rewards[0].__name__ == "cli_test_length"
    # The recipe's options for count_exact no longer apply: a warning, not an error.
    assert warnings == ["`reward_kwargs` has options for 'count_exact', which is not in `reward_funcs`: unused."]


def test_without_its_module_a_user_reward_name_is_unknown(user_rewards):
    with pytest.raises(ValueError, match="its module in `reward_modules`"):
        validate("--reward_funcs", "cli_test_length")


def test_dotted_paths_take_reward_kwargs(user_rewards):
    factory, function = f"{user_rewards}.length_factory", f"{user_rewards}.plain_length"
    options = json.dumps({factory: {"scale": 3.0}, function: {"offset": 1.0}})
    rewards, _ = validate("--reward_funcs", factory, function, "--reward_kwargs", options)
    assert rewards[0](prompts=None, completions=["ab"]) == [6.0]  # the factory, built with the options
    assert rewards[1](prompts=None, completions=["ab"]) == [3.0]  # the function, with the option bound
    assert rewards[1].__name__ == "plain_length"

    with pytest.raises(ValueError, match="Unknown option 'ofset' for reward .*did you mean 'offset'"):
        validate("--reward_funcs", function, "--reward_kwargs", json.dumps({function: {"ofset": 1.0}}))
    built = f"{user_rewards}.iou_1m"
    with pytest.raises(ValueError, match="already built GroundingReward"):
        validate("--reward_funcs", built, "--reward_kwargs", json.dumps({built: {"max_pixels": 4}}))


def test_a_user_reward_built_from_a_stock_one_logs_under_its_own_name(user_rewards):
    # The docs/rewards.md example: next to the stock reward, it must not mix its logs with it.
    rewards, _ = validate("--reward_funcs", "iou_squared", f"{user_rewards}.iou_1m")
    assert [r.__name__ for r in rewards] == ["iou_squared", "iou_squared_1m"]


def test_rewards_command_lists_user_rewards(capsys, user_rewards):
    assert main(["rewards", "cli_test_length", "--reward_modules", user_rewards]) == 0
    out = capsys.readouterr().out
    assert f"cli_test_length  [{user_rewards}]: Length of the completion times `scale`" in out
    assert "options: scale=1.0, name='cli_test_length'" in out


def _doc_blocks(language: str) -> list[str]:
    """Fenced `language` code blocks of the README and docs/."""
    texts = [path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]]
    fence = re.compile(rf"^```{language}\n(.*?)^```", re.MULTILINE | re.DOTALL)
    return [block for text in texts for block in fence.findall(text)]


def test_the_documented_user_reward_module_and_recipe_keys_work(tmp_path, monkeypatch, isolated_registries):
    module = next(block for block in _doc_blocks("python") if block.startswith("# my_rewards.py"))
    keys = next(block for block in _doc_blocks("yaml") if block.startswith("reward_modules: [my_rewards]"))
    (tmp_path / "my_rewards.py").write_text(module)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(Path(QUICKSTART).read_text().replace("reward_funcs: [count_exact]", "") + keys)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        script_args, training_args, model_args = make_parser().parse_args_and_config(["--config", str(recipe)])
        rewards, _ = validate_arguments(script_args, training_args, model_args)
        assert [r.__name__ for r in rewards] == script_args.reward_funcs
        completions = [[{"role": "assistant", "content": "x" * 200}]]
        assert rewards[-1](prompts=None, completions=completions) == [-72 / 128]  # limit 128 from reward_kwargs
    finally:
        sys.modules.pop("my_rewards", None)


# -- --version, --help, rewards ---------------------------------------------------------------------------------------


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"trl-perception {__version__}\n"


def test_train_help_documents_the_launcher_models_and_builders(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in ("--config RECIPE", "--num_processes N", "--accelerate_config", "zero3", "tiny:<family>"):
        assert text in out
    for name in [*BUILDERS, "qwen2_5_vl", "qwen3_vl", "--reward_modules", "trl-perception rewards", "null removes"]:
        assert name in out


def test_eval_takes_the_training_flag_names_and_the_recipe(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    train_flags = set(make_parser()._option_string_actions)
    shared = ["--config", "--model_name_or_path", "--dataset_name", "--dataset_config", "--dataset_kwargs",
              "--dataset_test_split", "--model_family", "--output_dir", "--min_pixels", "--max_pixels",
              "--chat_template_kwargs", "--dtype"]  # fmt: skip
    for flag in shared:
        assert flag in out and (flag == "--config" or flag in train_flags), flag
    for alias in (
        "--model_name_or_path MODEL_NAME_OR_PATH, --model",
        "--dataset_test_split DATASET_TEST_SPLIT, --split",
    ):
        assert alias in out
    for name in [*BUILDERS, "refcoco+", "--task_modules"]:
        assert name in out


def test_eval_through_the_console_script_is_one_error_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [
        "eval",
        "--config",
        QUICKSTART,
        "--model_name_or_path",
        "tiny:qwen2_5_vl",
        "--dataset_kwargs",
        '{"num_tset": 5}',
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "Unknown `dataset_kwargs` key 'num_tset'" in err[0] and "'num_test'" in err[0]


def test_rewards_command_lists_options_presets_and_dotted_paths(capsys):
    assert main(["rewards"]) == 0
    out = capsys.readouterr().out
    for name in list_rewards():
        assert f"\n{name}: " in out
    assert "options: source='auto', name=None" in out  # count_exact
    assert "presets (option `preset`): pr1, paper, vlm_r1, released" in out  # detection
    assert "presets (option `preset`): released, pr1" in out  # grounding
    for dotted in ("detection_paper", "detection_vlm_r1", "iou_squared", "perception"):
        assert f"trl_perception.rewards.{dotted}" in out
    assert "reward_modules" in out


@pytest.mark.parametrize("name", list_rewards())
def test_the_listed_options_are_the_accepted_ones(name):
    listing = reward_options(name)
    assert listing.complete
    given = {k: v for k, v in listing.options.items() if v is not inspect.Parameter.empty}
    assert callable(get_reward(name, **given))  # every listed option is accepted...
    with pytest.raises(TypeError):
        get_reward(name, not_an_option=1)  # ...and nothing else


# -- end of training --------------------------------------------------------------------------------------------------


def test_trackers_are_finished_with_trainer_end_or_accelerator_end_training():
    # transformers >= 5.18 has Trainer.end() (which calls accelerator.end_training()); older versions do not.
    assert hasattr(transformers.Trainer, "end") == (Version(transformers.__version__) >= Version("5.18.0"))
    calls = []

    class Accelerator:
        def end_training(self):
            calls.append("end_training")

    class OldTrainer:
        accelerator = Accelerator()

    class NewTrainer(OldTrainer):
        def end(self):
            calls.append("end")

    train_script._end(OldTrainer())
    train_script._end(NewTrainer())
    assert calls == ["end_training", "end"]


# -- end to end, through accelerate launch ----------------------------------------------------------------------------


def _cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run(
        [sys.executable, "-m", "trl_perception.cli", "train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environment,
        timeout=1200,
    )


@pytest.mark.slow
def test_eval_strategy_evaluates_on_the_test_split(tmp_path):
    """Also, without `--disable_tqdm`: progress bars for building the dataset, held-out scoring and the warm start;
    and the rollout pictures, on by default."""
    out = tmp_path / "run"
    proc = _cli(
        [
            "--config",
            QUICKSTART,
            # Merges with the recipe: its canvas, colours and prompt stay.
            "--dataset_kwargs",
            '{"num_train": 16, "num_test": 4}',
            "--max_steps",
            "1",
            "--warmstart_steps",
            "2",
            "--warmstart_batch_size",
            "4",
            "--heldout_samples",
            "4",
            "--per_device_train_batch_size",
            "4",
            "--num_generations",
            "2",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "1",
            "--per_device_eval_batch_size",
            "4",
            "--output_dir",
            str(out),
        ],  # fmt: skip
        cwd=tmp_path,
        HF_DATASETS_CACHE=str(tmp_path / "datasets-cache"),  # a fresh cache: the splits are built, not reused
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    history = json.loads((out / "metrics.json").read_text())["log_history"]
    evals = [entry for entry in history if "eval_reward" in entry]
    assert evals and "eval_rewards/count_exact/mean" in evals[0]
    for bar in ("Generating train split", "held-out scoring", "warm start: 100%"):
        assert bar in proc.stderr, bar
    assert "[warm start] step 2/2 loss" in proc.stdout
    pictures = sorted(os.listdir(out / "rollouts" / "step_000001"))
    assert pictures == ["prompt_00.json", "prompt_00.png", "prompt_01.json", "prompt_01.png"]


def test_dataset_progress_bars_follow_the_flag_and_restore_the_setting():
    import datasets

    assert not datasets.utils.are_progress_bars_disabled()
    with train_script.dataset_progress_bars(False):
        assert datasets.utils.are_progress_bars_disabled()
    assert not datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with train_script.dataset_progress_bars(True):
            assert not datasets.utils.are_progress_bars_disabled()
        assert datasets.utils.are_progress_bars_disabled()
    finally:
        datasets.enable_progress_bars()


@pytest.mark.slow
def test_a_failing_training_process_gives_one_traceback_and_one_line(tmp_path):
    proc = _cli(
        ["--config", QUICKSTART, "--dataset_name", "nobody/no-such-dataset", "--output_dir", str(tmp_path / "run")],
        cwd=tmp_path,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    assert proc.returncode == 1
    assert proc.stderr.count("Traceback") == 1 and "CalledProcessError" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "trl-perception train: error: the training process failed (exit code 1); see its error above."
    )

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
"""`trl-perception eval`'s arguments, resolved without a model or data: the training recipe (`--config`), the
training script's flag names and the earlier ones, default splits, the synthetic defaults, user task modules."""

import json
import sys

import pytest
import yaml

from trl_perception.eval.cli import build_parser, main, quickstart_dataset_kwargs, resolve_plan
from trl_perception.shipped_recipes import recipe_path


def plan(*argv):
    return resolve_plan(build_parser().parse_args(list(argv)))


def quickstart():
    with open(recipe_path("quickstart"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_config_evaluates_the_trained_model_on_the_recipes_held_out_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = quickstart()
    trained = tmp_path / recipe["output_dir"]
    trained.mkdir(parents=True)
    (trained / "config.json").write_text("{}")
    p = plan("--config", "quickstart")
    assert p.model == recipe["output_dir"]
    assert (p.dataset_name, p.dataset_config, p.split) == ("synthetic_shapes", "counting", "test")
    assert p.dataset_kwargs == recipe["dataset_kwargs"]
    assert p.task == "counting" and p.dtype == "float32" and p.recipe == recipe_path("quickstart")


def test_config_without_a_trained_model_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "quickstart"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "holds no trained model" in err and "trl-perception train --config quickstart" in err
    assert "tiny:qwen2_5_vl" in err


def test_command_line_overrides_the_recipe_and_dataset_kwargs_merge():
    p = plan("--config", "quickstart", "--model_name_or_path", "tiny:qwen2_5_vl", "--dataset_kwargs",
             '{"num_test": 5, "colors": null}', "--dataset_test_split", "train", "--max_pixels", "4096")  # fmt: skip
    expected = {k: v for k, v in quickstart()["dataset_kwargs"].items() if k != "colors"} | {"num_test": 5}
    assert p.dataset_kwargs == expected
    assert (p.model, p.split, p.max_pixels) == ("tiny:qwen2_5_vl", "train", 4096)


@pytest.mark.parametrize(
    "builder, split",
    [("refcoco", "val"), ("pixmo_count", "validation"), ("page_ocr", "test"), ("coco_detection", "validation"),
     ("synthetic_shapes", "test")],
)  # fmt: skip
def test_every_builder_has_a_default_split(builder, split):
    p = plan("--model_name_or_path", "m", "--dataset_name", builder)
    assert p.split == split
    assert p.task == {"refcoco": "grounding", "pixmo_count": "counting", "page_ocr": "ocr",
                      "coco_detection": "detection", "synthetic_shapes": "counting"}[builder]  # fmt: skip


def test_synthetic_counting_defaults_to_the_quickstarts_data():
    assert plan("--model", "m", "--dataset", "synthetic_shapes").dataset_kwargs == quickstart()["dataset_kwargs"]
    assert quickstart_dataset_kwargs() == quickstart()["dataset_kwargs"]
    grounding = plan("--model", "m", "--dataset", "synthetic_shapes", "--task", "grounding")
    assert (grounding.dataset_config, grounding.dataset_kwargs, grounding.task) == ("grounding", {}, "grounding")


def test_the_earlier_flag_names_still_work():
    p = plan("--model", "ckpt", "--dataset", "refcoco+", "--data-dir", "refer/data/refcoco+", "--image-dir", "imgs",
             "--split", "testA", "--builder-arg", "thinking=true", "--family", "qwen2_vl")  # fmt: skip
    assert (p.model, p.dataset_name, p.dataset_config, p.split) == ("ckpt", "refcoco", "refcoco+", "testA")
    assert p.dataset_kwargs == {"data_dir": "refer/data/refcoco+", "image_dir": "imgs", "thinking": True}
    assert p.model_family == "qwen2_vl" and p.task == "grounding"
    same = plan("--model_name_or_path", "ckpt", "--dataset_name", "refcoco", "--dataset_config", "refcoco+",
                "--dataset_kwargs", json.dumps(p.dataset_kwargs), "--dataset_test_split", "testA",
                "--model_family", "qwen2_vl")  # fmt: skip
    assert same == p


def test_flags_are_not_prefix_matched(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model_name", "m", "--dataset_name", "refcoco"])
    assert "unrecognized arguments: --model_name" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "m", "--dataset", "refcoco", "--dataset_kwargs", '{"data_dri": "x"}'], "did you mean 'data_dir'"),
        (["--model", "m", "--dataset", "refcoco", "--task", "pointing"], "Unknown evaluation task 'pointing'"),
        (["--model", "m", "--dataset", "synthetic_shapes", "--split", "validation"], "splits 'train' and 'test'"),
        (["--dataset", "refcoco"], "Give the model"),
        (["--model", "m", "--config", "quickstrat"], "did you mean `--config quickstart`"),
    ],
)
def test_bad_arguments_are_one_error_line_before_any_model_is_loaded(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("trl-perception eval: error:") and message in err


def test_a_task_registered_by_a_user_module_can_be_named(tmp_path, monkeypatch, isolated_registries):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_eval_tasks.py").write_text(
        "from trl_perception.eval import register_eval_task\n"
        "register_eval_task('pointing', score_sample=lambda c, r, ctx: {},\n"
        "                   metric=lambda records, ctx: {}, max_new_tokens=16)\n"
    )
    p = plan("--model", "m", "--dataset", "refcoco", "--task", "pointing", "--task_modules", "my_eval_tasks")
    assert p.task == "pointing"
    sys.modules.pop("my_eval_tasks", None)

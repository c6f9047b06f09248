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
"""LoRA (`peft_config`, `--use_peft`) and frozen vision parts (`freeze_vision_tower`, `freeze_vision_projector`) on the
HF generation path, with real tiny checkpoints of every family built offline. The vLLM colocate sync of LoRA weights
is tested in tests/test_vllm_colocate.py."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import AutoModelForImageTextToText

from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
from trl_perception.families import get_family, vision_parameters
from trl_perception.testing import build_tiny_model


peft = pytest.importorskip("peft")

_IN_OWN_PROCESS = "TRL_PERCEPTION_TEST_OWN_PROCESS"
FAMILIES = ["qwen2_5_vl", "qwen2_vl", "qwen3_vl", "qwen3_5", "internvl"]


def _image(width, height, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _dataset(n=2):
    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": f"Find object {i}."}] for i in range(n)],
            "image": [_image(64 + 9 * i, 48, seed=i) for i in range(n)],
        }
    )


def _varied_reward(completions, **kwargs):
    # Differs between the completions of a group (unlike their length, which the tiny models max out), so that the
    # advantages, and with them the updates, are not zero.
    return [float(sum(map(ord, c[0]["content"]))) for c in completions]


def _args(tmp_path, **kwargs):
    defaults = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 2,
        "num_generations": 2,
        "max_completion_length": 8,
        "max_steps": 1,
        "learning_rate": 0.1,
        "logging_steps": 1,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
    }
    defaults.update(kwargs)
    return PerceptionGRPOConfig(**defaults)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_model(root / arch, arch=arch) for arch in FAMILIES}


def _linear_names(model):
    return {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


@pytest.mark.parametrize("arch", FAMILIES)
def test_family_module_paths_match_the_tiny_models(tiny_models, arch, request):
    if arch == "qwen3_5" and "vllm" in sys.modules and not os.environ.get(_IN_OWN_PROCESS):
        # A process of its own: once a vLLM engine ran in this process (earlier tests), transformers 5.17 no longer
        # builds the Qwen3.5 vision tower ("Qwen3_5VisionConfig has no attribute num_attention_heads").
        node = f"{Path(__file__).resolve()}::{request.node.name}"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node]
        env = {**os.environ, _IN_OWN_PROCESS: "1"}
        proc = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1]
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "1 passed" in proc.stdout
        return
    model = AutoModelForImageTextToText.from_pretrained(tiny_models[arch])
    family = get_family(arch)
    tower = vision_parameters(model, arch, "tower")
    projector = vision_parameters(model, arch, "projector")
    assert tower and projector and not set(tower) & set(projector)
    # Together they are every parameter outside the language model and the head.
    rest = {n for n, _ in model.named_parameters()} - set(tower) - set(projector)
    assert all(n.startswith((family.language_model + ".", "lm_head.")) for n in rest), sorted(rest)[:5]
    assert all(n.startswith(family.vision_tower + ".") for n in tower)
    assert all(n.startswith(tuple(p + "." for p in family.vision_projector)) for n in projector)

    # LoRA's default targets: every listed projection of the language model, nothing on the vision side.
    targets = family.lora_targets()
    matched = {n for n in _linear_names(model) if re.fullmatch(targets, n)}
    expected = {
        n
        for n in _linear_names(model)
        if n.startswith(family.language_model + ".") and n.rsplit(".", 1)[-1] in family.lora_target_modules
    }
    assert matched == expected
    assert {n.split(".layers.")[1].split(".")[0] for n in matched} == {"0", "1"}  # in both decoder layers


def test_a_family_whose_vision_module_is_missing_is_a_clear_error(tmp_path, tiny_models):
    model = AutoModelForImageTextToText.from_pretrained(tiny_models["qwen2_5_vl"])
    with pytest.raises(ValueError, match=r"'model.vision_tower'.*has no such module.*'model.visual'"):
        vision_parameters(model, "internvl", "tower")
    # Through the trainer: the family named in the config decides where the vision tower is looked up.
    with pytest.raises(ValueError, match=r"vision tower at 'model.vision_tower'"):
        PerceptionGRPOTrainer(
            model,
            _varied_reward,
            args=_args(tmp_path, model_family="internvl", freeze_vision_tower=True),
            train_dataset=_dataset(),
        )


def test_lora_targets_on_the_vision_tower_warn_and_cannot_be_frozen(tmp_path, tiny_models, caplog):
    # InternVL's vision encoder has `q_proj`/`v_proj` too: TRL-style bare names adapt it.
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    with caplog.at_level("WARNING"):
        trainer = PerceptionGRPOTrainer(
            tiny_models["internvl"], _varied_reward, args=_args(tmp_path), train_dataset=_dataset(), peft_config=config
        )
    assert any(".vision_tower." in n and ".lora_A." in n for n, _ in trainer.model.named_parameters())
    assert "LoRA adapts 4 modules of the vision tower" in caplog.text
    with pytest.raises(ValueError, match="freeze_vision_tower=True`, but LoRA adapts 4 modules"):
        PerceptionGRPOTrainer(
            tiny_models["internvl"],
            _varied_reward,
            args=_args(tmp_path, freeze_vision_tower=True),
            train_dataset=_dataset(),
            peft_config=config,
        )


@pytest.mark.slow
def test_lora_trains_the_adapters_only(tmp_path, tiny_models):
    trainer = PerceptionGRPOTrainer(
        tiny_models["qwen2_5_vl"],
        _varied_reward,
        # lora_B starts at zero, so lora_A moves from the second step on
        args=_args(tmp_path, max_steps=2, per_device_train_batch_size=4),
        train_dataset=_dataset(8),
        peft_config=peft.LoraConfig(r=4, lora_alpha=8),  # no target_modules: the family's default
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    adapters = {n for n in before if ".lora_" in n}
    assert adapters and all(".language_model." in n for n in adapters)  # vision tower untouched
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)}
    assert changed <= adapters, sorted(changed - adapters)[:3]
    assert changed == adapters

    trainer.save_model(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["target_modules"] == get_family("qwen2_5_vl").lora_targets()


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "freeze_projector"), [("qwen2_5_vl", False), ("internvl", True)])
def test_frozen_vision_parts_stay_bit_identical(tmp_path, tiny_models, arch, freeze_projector):
    trainer = PerceptionGRPOTrainer(
        tiny_models[arch],
        _varied_reward,
        args=_args(tmp_path, freeze_vision_tower=True, freeze_vision_projector=freeze_projector),
        train_dataset=_dataset(),
    )
    tower = set(vision_parameters(trainer.model, arch, "tower"))
    projector = set(vision_parameters(trainer.model, arch, "projector"))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)}
    assert not changed & tower
    assert bool(changed & projector) is not freeze_projector
    assert any(n.startswith(get_family(arch).language_model + ".") for n in changed)


def test_lora_and_freezing_options_reach_the_trainer_from_the_command_line_and_a_recipe(tmp_path):
    from trl import get_peft_config

    from trl_perception.scripts.train import make_parser

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("freeze_vision_projector: true\nlora_alpha: 8\nbf16: false\nuse_cpu: true\n")
    argv = ["--config", str(recipe), "--model_name_or_path", "tiny:qwen2_5_vl", "--reward_funcs", "count_exact"]
    argv += ["--output_dir", str(tmp_path), "--use_peft", "true", "--lora_r", "4", "--freeze_vision_tower", "true"]
    _, training_args, model_args = make_parser().parse_args_and_config(argv, fail_with_unknown_args=False)[:3]
    assert training_args.freeze_vision_tower and training_args.freeze_vision_projector
    config = get_peft_config(model_args)
    assert (config.r, config.lora_alpha, config.target_modules) == (4, 8, None)  # the trainer fills the targets in

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
"""`PerceptionGRPOTrainer` with transformers generation: geometry kwarg, per-task metrics, vision-token suppression,
start-up validation. Real TRL trainer, real tiny Qwen2-VL / Qwen2.5-VL checkpoints built offline."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer
from trl_perception.families import QWEN_VISION_TOKENS as VISION_SPECIAL_TOKENS
from trl_perception.testing import build_tiny_model


# Mixed sizes and aspect ratios: each hits a different branch of smart_resize (upscale to min_pixels, downscale to
# max_pixels, in between).
IMAGE_SIZES = [(64, 48), (300, 200), (20, 30), (97, 131)]


def _image(width, height, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _dataset(multi_image=False, tasks=None):
    rows = {"prompt": [[{"role": "user", "content": f"Find object {i}."}] for i in range(len(IMAGE_SIZES))]}
    if multi_image:
        # Each row pairs two images of different sizes (the second is the next row's size).
        rows["images"] = [
            [_image(*IMAGE_SIZES[i], seed=i), _image(*IMAGE_SIZES[(i + 1) % 4], seed=10 + i)] for i in range(4)
        ]
    else:
        rows["image"] = [_image(w, h, seed=i) for i, (w, h) in enumerate(IMAGE_SIZES)]
    rows["row"] = list(range(len(IMAGE_SIZES)))
    if tasks is not None:
        rows["task"] = tasks
    return Dataset.from_dict(rows)


def _args(tmp_path, config_class=PerceptionGRPOConfig, **kwargs):
    defaults = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,  # VLM training on CPU: keep batches tiny
        "num_generations": 2,
        "max_completion_length": 8,
        "max_steps": 1,
        "learning_rate": 0.1,
        "logging_steps": 1,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "seed": 0,
    }
    defaults.update(kwargs)
    return config_class(**defaults)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_model(root / arch, arch=arch) for arch in ("qwen2_5_vl", "qwen2_vl")}


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2_vl"])
@pytest.mark.parametrize("multi_image", [False, True])
def test_model_image_sizes_reach_rewards(tmp_path, tiny_models, arch, multi_image):
    path = tiny_models[arch]
    seen = []

    def geometry_reward(completions, model_image_sizes, row, **kwargs):
        seen.extend(zip(row, model_image_sizes, strict=True))
        return [0.0] * len(completions)

    dataset = _dataset(multi_image=multi_image)
    trainer = PerceptionGRPOTrainer(
        model=path, reward_funcs=geometry_reward, args=_args(tmp_path), train_dataset=dataset
    )
    trainer.train()

    # Expected: the processor's own grid, times the patch size, for each image of the row.
    image_processor = AutoProcessor.from_pretrained(path).image_processor
    assert len(seen) == 4  # one generation batch: 2 prompts x 2 generations
    for row, sizes in seen:
        images = dataset[row]["images"] if multi_image else [dataset[row]["image"]]
        grid = image_processor(images=images, return_tensors="pt")["image_grid_thw"].tolist()
        assert sizes == [[w * 14, h * 14] for _, h, w in grid]
        for (w_r, h_r), image in zip(sizes, images, strict=True):
            # The smart-resize invariants: multiples of 28 within the pixel budget.
            assert w_r % 28 == 0 and h_r % 28 == 0
            assert 28 * 28 * 4 <= w_r * h_r <= 28 * 28 * 16
            assert (w_r, h_r) != image.size  # never the original size for these odd sizes


def test_model_image_sizes_can_be_disabled(tmp_path, tiny_models):
    seen = []

    def reward(completions, **kwargs):
        seen.append("model_image_sizes" in kwargs)
        return [0.0] * len(completions)

    args = _args(tmp_path, pass_model_image_sizes=False)
    PerceptionGRPOTrainer(tiny_models["qwen2_5_vl"], reward, args=args, train_dataset=_dataset()).train()
    assert seen == [False]


def test_per_task_metrics(tmp_path, tiny_models):
    # A router-style pair of rewards: each scores its own task and returns None elsewhere.
    def grounding_reward(completions, task, **kwargs):
        return [1.0 if t == "grounding" else None for t in task]

    def counting_reward(completions, task, **kwargs):
        return [0.25 if t == "counting" else None for t in task]

    dataset = _dataset(tasks=["grounding", "counting", "grounding", "ocr"])
    # 2 prompts per step, no shuffling: step 1 sees grounding + counting, step 2 grounding + ocr.
    args = _args(tmp_path, max_steps=2, per_device_train_batch_size=4, shuffle_dataset=False)
    trainer = PerceptionGRPOTrainer(
        tiny_models["qwen2_5_vl"], [grounding_reward, counting_reward], args=args, train_dataset=dataset
    )
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logs) == 2
    first, second = logs
    assert first["rewards/grounding/grounding_reward/mean"] == 1.0
    assert first["rewards/grounding/grounding_reward/std"] == 0.0
    assert first["rewards/counting/counting_reward/mean"] == 0.25
    assert first["reward/counting/mean"] == 0.25
    # A reward not applicable to a task has no value there (NaN, logged as None).
    assert first["rewards/grounding/counting_reward/mean"] is None
    # Keys stay stable once a task was seen: counting is absent from step 2 but still logged.
    assert "rewards/counting/counting_reward/mean" in second
    assert second["rewards/counting/counting_reward/mean"] is None
    assert second["rewards/grounding/grounding_reward/mean"] == 1.0
    # ocr rows get no reward at all (both functions return None).
    assert second["reward/ocr/mean"] is None
    assert not any(key.startswith("rewards/ocr") and entry[key] is not None for entry in logs for key in entry)


def _trap_model(source, target):
    """The tiny model, rigged to prefer vision special tokens: without suppression nearly every token is one."""
    model = AutoModelForImageTextToText.from_pretrained(source)
    processor = AutoProcessor.from_pretrained(source)
    tokenizer = processor.tokenizer
    with torch.no_grad():
        norm = model.model.language_model.norm.weight
        norm.zero_()
        norm[0] = 1.0  # final hidden state = (x0 / rms, 0, ..., 0)
        head = model.lm_head.weight
        head.zero_()
        ids = [tokenizer.convert_tokens_to_ids(t) for t in VISION_SPECIAL_TOKENS]
        for sign, token_id in zip([1, -1, 1, -1, 1], ids, strict=True):
            head[token_id, 0] = 200.0 * sign  # whatever the sign of x0, some vision token wins by a wide margin
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return str(target), set(ids)


def test_vision_tokens_never_sampled(tmp_path, tiny_models):
    path, vision_ids = _trap_model(tiny_models["qwen2_5_vl"], tmp_path / "trap")

    # The trap works: plain transformers sampling emits vision tokens.
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    conversation = [
        {"role": "user", "content": [{"type": "image", "image": _image(64, 48, 0)}, {"type": "text", "text": "hi"}]}
    ]
    inputs = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    out = model.generate(**inputs, max_new_tokens=8, do_sample=True)
    assert set(out[0, inputs["input_ids"].shape[1] :].tolist()) & vision_ids

    sampled = []

    def reward(completions, completion_ids, **kwargs):
        sampled.extend(token for ids in completion_ids for token in ids)
        return [0.0] * len(completions)

    PerceptionGRPOTrainer(path, reward, args=_args(tmp_path), train_dataset=_dataset()).train()
    assert len(sampled) == 4 * 8
    assert not set(sampled) & vision_ids


def test_one_step_changes_parameters(tmp_path, tiny_models):
    def reward(completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    trainer = PerceptionGRPOTrainer(
        tiny_models["qwen2_5_vl"], reward, args=_args(tmp_path), train_dataset=_dataset(multi_image=True)
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("model.visual") for n in changed)
    assert any(n.startswith("model.language_model") for n in changed)


def test_right_padded_processor_is_rejected(tmp_path, tiny_models):
    processor = AutoProcessor.from_pretrained(tiny_models["qwen2_5_vl"])
    processor.tokenizer.padding_side = "right"
    with pytest.raises(ValueError, match="left padding"):
        PerceptionGRPOTrainer(
            tiny_models["qwen2_5_vl"],
            lambda completions, **kw: [0.0] * len(completions),
            args=_args(tmp_path),
            train_dataset=_dataset(),
            processing_class=processor,
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"use_vllm": True}, "needs `vllm_max_model_length`"),
        ({"use_vllm": True, "vllm_max_model_length": 16, "max_completion_length": 16}, "must exceed"),
        ({"chat_template_kwargs": {"truncation": True, "max_length": 64}}, "truncate prompts"),
    ],
)
def test_config_validation(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _args(tmp_path, **kwargs)


def test_image_tokens_must_survive_templating(tmp_path, tiny_models):
    # A chat template that drops image placeholders leaves images without their tokens: a clear error, not a crash in
    # the vision merge.
    processor = AutoProcessor.from_pretrained(tiny_models["qwen2_5_vl"])
    template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
        "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
        "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    processor.chat_template = template
    trainer = PerceptionGRPOTrainer(
        tiny_models["qwen2_5_vl"],
        lambda completions, **kw: [0.0] * len(completions),
        args=_args(tmp_path),
        train_dataset=_dataset(),
        processing_class=processor,
    )
    with pytest.raises(ValueError, match="image tokens"):
        trainer.train()


def test_plain_grpo_config_gets_perception_defaults(tmp_path, tiny_models):
    from trl import GRPOConfig

    seen = []

    def reward(completions, model_image_sizes, **kwargs):
        seen.append(model_image_sizes)
        return [0.0] * len(completions)

    plain = _args(tmp_path, config_class=GRPOConfig)
    PerceptionGRPOTrainer(tiny_models["qwen2_5_vl"], reward, args=plain, train_dataset=_dataset()).train()
    assert len(seen) == 1 and len(seen[0]) == 4
    assert all(len(sizes) == 1 and min(sizes[0]) >= 28 for sizes in seen[0])

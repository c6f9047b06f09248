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
"""The model-family layer: every registered family through parsing, rewards, prompts and eval scoring in its own
frame; a made-up family registered from outside the package; real tiny checkpoints recognised and trained (HF path).
"""

import json
import re

import numpy as np
import pytest
from datasets import Dataset
from PIL import Image

from trl_perception.eval.backends import Generation
from trl_perception.eval.runner import EvalConfig, evaluate
from trl_perception.eval.scoring import score_detection, score_grounding
from trl_perception.families import (
    ModelFamily,
    get_family,
    list_families,
    load_processor,
    model_input_size,
    register_family,
    resolve_family,
    tiny_factory,
    unregister_family,
    vision_token_ids,
)
from trl_perception.geometry import ImageGeometry, convert_boxes, get_frame, register_frame, smart_resize
from trl_perception.parsing import ParsedBoxes, parse_boxes, register_box_syntax
from trl_perception.prompts import PROMPT_TASKS, build_prompt, get_prompt_template, register_prompt_style
from trl_perception.rewards import get_reward


BUILT_IN = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "internvl"]

# Images far from square, both ways; GT boxes in original pixels.
IMAGES = [(1280, 320, [100.0, 40.0, 700.0, 300.0]), (240, 960, [20.0, 500.0, 200.0, 900.0])]


def write_boxes(syntax, boxes, labels):
    """A completion in `syntax` (the answer each family's checkpoints write), rounded to integers as models do."""
    boxes = [[int(round(v)) for v in box] for box in boxes]
    if syntax == "json":
        return "```json\n" + json.dumps([{"bbox_2d": b, "label": lab} for b, lab in zip(boxes, labels)]) + "\n```"
    if syntax == "pairs":
        return "".join(
            f"<|object_ref_start|>{lab}<|object_ref_end|><|box_start|>({b[0]},{b[1]}),({b[2]},{b[3]})<|box_end|>"
            for b, lab in zip(boxes, labels)
        )
    if syntax == "ref_box":
        return "".join(f"<ref>{lab}</ref><box>[{json.dumps(b)}]</box>" for b, lab in zip(boxes, labels))
    raise AssertionError(syntax)


def model_size(family, width, height):
    spec = get_family(family)
    h, w = smart_resize(height, width, spec.factor, spec.min_pixels, spec.max_pixels)
    return w, h


def perfect_answer(family, width, height, boxes, labels):
    spec = get_family(family)
    geometry = ImageGeometry(width, height, *model_size(family, width, height))
    in_frame = np.asarray(convert_boxes(np.asarray(boxes, dtype=float), "original", spec.box_frame, geometry))
    return write_boxes(spec.box_syntax, in_frame.tolist(), labels), geometry


# ----------------------------------------------------------------------------------------------- registry


def test_builtin_families_and_their_frames():
    assert list_families()[: len(BUILT_IN)] == BUILT_IN
    qwen3 = get_family("qwen3_vl")
    assert (qwen3.box_frame, qwen3.box_syntax, qwen3.factor) == ("grid_1000", "json", 32)
    assert get_family("qwen3_5").box_frame == "grid_1000" and get_family("qwen3_5").factor == 32
    assert (get_family("qwen2_5_vl").box_frame, get_family("qwen2_5_vl").factor) == ("resized", 28)
    assert get_family("qwen2_vl").box_syntax == "pairs"
    assert get_family("internvl").box_syntax == "ref_box" and get_family("internvl").pixel_budget_keys is None
    # A family name is accepted wherever a frame is, meaning its box frame.
    assert get_frame("qwen3_vl").name == "grid_1000" and get_frame("qwen2_5_vl").name == "resized"


@pytest.mark.parametrize(
    "model_type, family",
    [("qwen3_vl", "qwen3_vl"), ("qwen3_vl_moe", "qwen3_vl"), ("qwen3_5", "qwen3_5"), ("qwen3_5_moe", "qwen3_5"),
     ("qwen2_5_vl", "qwen2_5_vl"), ("qwen2_vl", "qwen2_vl"), ("internvl", "internvl")],
)  # fmt: skip
def test_auto_recognises_model_types(model_type, family):
    assert resolve_family("auto", model_type=model_type).name == family


def test_unknown_family_lists_registered_ones_and_how_to_register():
    with pytest.raises(ValueError, match=r"Unknown model family 'qwen4'.*'qwen3_vl'.*register_family"):
        get_family("qwen4")
    with pytest.raises(ValueError, match=r"model_type 'llava'.*register"):
        resolve_family("auto", model_type="llava")
    with pytest.raises(ValueError, match="needs a model to resolve from"):
        get_family("auto")
    with pytest.raises(ValueError, match=r"Unknown model family 'qwen4'.*registered families"):
        get_reward("iou", family="qwen4")
    with pytest.raises(ValueError, match="already registered"):
        register_family(get_family("qwen3_vl"))
    with pytest.raises(ValueError, match="takes no pixel budget"):
        get_family("internvl").processor_kwargs(max_pixels=1000)


# ------------------------------------------------------------------------------- rewards in each frame


@pytest.mark.parametrize("family", BUILT_IN)
@pytest.mark.parametrize("width, height, box", IMAGES)
@pytest.mark.parametrize("how", ["explicit", "trainer"])
def test_perfect_answer_scores_iou_one_in_the_family_frame(family, width, height, box, how):
    text, geometry = perfect_answer(family, width, height, [box], ["the thing"])
    columns = {"boxes": [[box]], "width": [width], "height": [height]}
    if how == "explicit":
        reward = get_reward("iou", family=family)
    else:  # family="auto": the trainer passes `model_family` (and the model-input sizes)
        reward = get_reward("iou")
        columns["model_family"] = [family]
        columns["model_image_sizes"] = [[[geometry.resized_width, geometry.resized_height]]]
    (value,) = reward(prompts=[None], completions=[text], **columns)
    # Integer rounding of the answer in the model's frame costs a little IoU.
    assert value == pytest.approx(1.0, abs=0.02)

    # The same answer read in a wrong frame is far off (this is the "IoU stuck near 0" failure).
    wrong = "resized" if get_family(family).box_frame == "grid_1000" else "grid_1000"
    (bad,) = get_reward("iou", family=family, frame=wrong)(prompts=[None], completions=[text], **columns)
    assert bad < 0.5

    # Evaluation maps it back to original pixels with the same frame.
    scored = score_grounding(text, {"boxes": [box]}, geometry, get_family(family).box_frame)
    assert scored["failure"] is None and scored["score"] == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose(scored["prediction"], box, atol=max(width, height) / 500)


@pytest.mark.parametrize("family", BUILT_IN)
def test_detection_and_counting_in_the_family_frame(family):
    width, height = 1280, 320
    boxes = [[100.0, 40.0, 300.0, 300.0], [700.0, 20.0, 1200.0, 310.0]]
    text, geometry = perfect_answer(family, width, height, boxes, ["person", "dog"])
    sizes = [[[geometry.resized_width, geometry.resized_height]]]
    columns = {"boxes": [boxes], "category_ids": [[1, 18]], "width": [width], "height": [height]}
    columns.update(model_family=[family], model_image_sizes=sizes)
    (value,) = get_reward("detection")(prompts=[None], completions=[text], **columns)
    assert value == pytest.approx(3.0, abs=0.05)  # F1 + mean IoU + format, each ~1

    row = {"boxes": boxes, "category_ids": [1, 18], "width": width, "height": height}  # one row, not the columns
    scored = score_detection(text, row, geometry, get_family(family).box_frame, {1: "person", 18: "dog"})
    assert [p["category_id"] for p in scored["prediction"]] == [1, 18]

    centres = [[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes]
    counting = {"points": [centres], "count": [2], "width": [width], "height": [height]}
    counting.update(model_family=[family], model_image_sizes=sizes)
    (match,) = get_reward("count_match")(prompts=[None], completions=[text], **counting)
    assert match == pytest.approx(1.0, abs=0.02)
    assert get_reward("count_exact")(prompts=[None], completions=[text], **counting) == [1.0]


def test_auto_without_a_model_falls_back_with_a_warning():
    reward = get_reward("iou")
    text, _ = perfect_answer("qwen2_5_vl", 640, 480, [[10, 10, 300, 200]], ["x"])
    with pytest.warns(UserWarning, match="no `model_family` was passed.*qwen2_5_vl"):
        (value,) = reward(prompts=[None], completions=[text], boxes=[[[10, 10, 300, 200]]], width=[640], height=[480])
    assert value == pytest.approx(1.0, abs=0.02)


# ----------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("family", BUILT_IN)
@pytest.mark.parametrize("task", PROMPT_TASKS)
@pytest.mark.parametrize("thinking", [False, True])
def test_prompts_for_every_family_task_and_thinking_mode(family, task, thinking):
    messages = build_prompt(task, family=family, thinking=thinking, question="red mug", categories="cat, dog")
    user = messages[-1]["content"]
    assert "{question}" not in user and "{categories}" not in user  # every slot is filled
    assert ("<think>" in user) == thinking
    if task in ("grounding", "counting"):
        assert "red mug" in user
    spec = get_family(family)
    if task == "grounding" and spec.box_syntax == "json":
        assert "bbox_2d" in user
    if task == "grounding" and spec.box_syntax == "ref_box":
        assert "<ref>red mug</ref>" in user


def test_qwen3_prompts_name_the_relative_grid_syntax():
    assert get_prompt_template("grounding", family="qwen3_vl") == get_prompt_template("grounding", family="qwen3_5")
    assert "JSON" in get_prompt_template("grounding", family="qwen3_vl").user


# -------------------------------------------------------------------- a family registered from outside


def _parse_loc(answer, max_boxes):
    found = re.findall(r"<loc>(\d+) (\d+) (\d+) (\d+)</loc>", answer)[:max_boxes]
    coords = [[float(v) for v in m] for m in found]
    return ParsedBoxes(coords, (None,) * len(coords), len(coords), format="loc") if coords else None


def _grid_10000(w, h, rw, rh):
    return 10000.0, 10000.0


@pytest.fixture
def toy_family(isolated_registries):  # the frame, syntax and prompt style go too (tests/conftest.py)
    register_frame("grid_10000", _grid_10000, description="basis points of the image", overwrite=True)
    register_box_syntax("loc", _parse_loc, detect=lambda s: "<loc>" in s, overwrite=True)
    register_prompt_style(
        "toy", {"grounding": "Where is the {question}? Answer <loc>x1 y1 x2 y2</loc>."}, overwrite=True
    )
    family = register_family(
        ModelFamily(
            name="toy_vl",
            model_types=("toy_vl",),
            box_frame="grid_10000",
            box_syntax="loc",
            prompt_style="toy",
            patch_size=10,
            merge_size=1,
            min_pixels=100,
            max_pixels=10**6,
            vision_tokens=("<toy_image>",),
        ),
        overwrite=True,
    )
    yield family
    unregister_family("toy_vl")


def test_a_new_family_needs_no_edit_anywhere_else(toy_family, tmp_path):
    width, height, box = 1000, 250, [100.0, 50.0, 600.0, 200.0]
    text = "<answer><loc>1000 2000 6000 8000</loc></answer>"  # basis points of (W, H)

    # Parsing: the family's syntax, first in "auto" and by name.
    assert parse_boxes(text, prefer="loc").value.coords == [[1000.0, 2000.0, 6000.0, 8000.0]]
    assert parse_boxes(text, format="loc").value.format == "loc"

    # Rewards: by name, and through the trainer's `model_family` column.
    columns = {"boxes": [[box]], "width": [width], "height": [height]}
    assert get_reward("iou", family="toy_vl")(prompts=[None], completions=[text], **columns) == [pytest.approx(1.0)]
    auto = get_reward("iou")(prompts=[None], completions=[text], model_family=["toy_vl"], **columns)
    assert auto == [pytest.approx(1.0)]
    assert resolve_family("auto", model_type="toy_vl") is toy_family

    # Prompts.
    assert build_prompt("grounding", family="toy_vl", question="cat")[-1]["content"].startswith("Where is the cat?")

    # Eval scoring and a whole (scripted-model) evaluation run, with the family's frame and syntax.
    geometry = ImageGeometry(width, height, width, height)
    assert score_grounding(text, {"boxes": [box]}, geometry, "toy_vl", syntax="loc")["score"] == pytest.approx(1.0)

    class Scripted:
        name = "scripted"

        def generate(self, prompts, images):
            return [Generation(text, 5, len(text), "stop", image.size) for image in images]

    rows = Dataset.from_dict(
        {
            "id": ["r0"],
            "prompt": [build_prompt("grounding", family="toy_vl", question="cat", variant="eval")],
            "image": [Image.new("RGB", (width, height))],
            "boxes": [[box]],
            "width": [width],
            "height": [height],
            "task": ["grounding"],
        }
    )
    config = EvalConfig(task="grounding", output_dir=str(tmp_path / "eval"), frame="toy_vl", family="toy_vl",
                        num_visualizations=0, progress=False)  # fmt: skip
    assert config.frame == "grid_10000"
    result = evaluate(rows, config, Scripted())
    assert result.metrics["acc@0.5"] == 1.0 and result.records[0]["score"] == pytest.approx(1.0)


# ---------------------------------------------------------------------- real tiny checkpoints (offline)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    from trl_perception.testing import build_tiny_model

    root = tmp_path_factory.mktemp("families")
    return {family: build_tiny_model(root / family, arch=family) for family in ("qwen3_vl", "qwen3_5", "internvl")}


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5", "internvl"])
def test_tiny_checkpoint_is_recognised_and_its_processor_matches_the_family(tiny_checkpoints, family):
    path = tiny_checkpoints[family]
    assert resolve_family("auto", model=path).name == family
    processor = load_processor(path)
    assert processor.tokenizer.padding_side == "left"
    spec = get_family(family)
    assert set(vision_token_ids(processor.tokenizer, family)) == set(spec.vision_tokens)
    if spec.pixel_budget_keys is None:
        assert model_input_size(processor, 1280, 320) == (56, 56)  # one fixed tile
        return
    ip = processor.image_processor
    assert ip.patch_size * ip.merge_size == spec.factor == 32
    # The processor's own grid equals the family's smart_resize: rewards and the model agree on the resize.
    image = Image.new("RGB", (300, 60))
    grid = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert (grid[2] * ip.patch_size, grid[1] * ip.patch_size) == model_input_size(processor, 300, 60)
    with pytest.raises(ValueError, match="no offline tiny model|Unknown model family"):
        tiny_factory("nope")


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5", "internvl"])
def test_trainer_steps_with_images_on_the_hf_path(tiny_checkpoints, family, tmp_path):
    from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in [(300, 60), (64, 200)]]
    dataset = Dataset.from_dict(
        {
            "prompt": [build_prompt("grounding", family=family, question=q) for q in ("cat", "dog")],
            "image": images,
            "boxes": [[[10, 10, 100, 50]], [[5, 20, 60, 180]]],
            "width": [300, 64],
            "height": [60, 200],
        }
    )
    seen = []
    grounding = get_reward("iou")

    def spy(completions, completion_ids, model_family, model_image_sizes=None, **kwargs):
        seen.append((set(model_family), model_image_sizes))
        return [float(sum(ids) % 7) for ids in completion_ids]  # varies within a group: a non-zero update

    args = PerceptionGRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, max_completion_length=6,
        max_steps=1, learning_rate=1e-3, bf16=False, gradient_checkpointing=False, report_to="none", use_cpu=True,
        logging_steps=1, seed=0,
    )  # fmt: skip
    trainer = PerceptionGRPOTrainer(tiny_checkpoints[family], [grounding, spy], args=args, train_dataset=dataset)
    assert trainer.model_family.name == family
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 1
    assert seen and all(families == {family} for families, _ in seen)
    if get_family(family).pixel_budget_keys is not None:  # smart-resized: sizes are multiples of the factor 32
        sizes = [s for _, batch in seen for row in batch for s in row]
        assert sizes and all(w % 32 == 0 and h % 32 == 0 for w, h in sizes)
    changed = [n for n, p in trainer.model.named_parameters() if not bool((p == before[n]).all())]
    assert changed  # an optimizer step happened
    # The family's vision tokens are banned from sampling.
    banned = set(trainer.generation_config.suppress_tokens)
    assert set(vision_token_ids(trainer.processing_class.tokenizer, family).values()) <= banned


@pytest.mark.parametrize(
    "chat_template_kwargs, opening",
    [(None, "<think>\n"), ({"enable_thinking": False}, "<think>\n\n</think>\n\n")],
    ids=["template-default", "no-thinking"],
)
def test_qwen3_5_thinking_is_set_by_chat_template_kwargs(tiny_checkpoints, tmp_path, chat_template_kwargs, opening):
    """Qwen3.5's chat template thinks by default; `chat_template_kwargs` (a TRL GRPOConfig field, docs/families.md)
    reaches the trainer's rollout prompts, whichever generation backend then receives them."""
    from trl.data_utils import prepare_multimodal_messages

    from trl_perception import PerceptionGRPOConfig, PerceptionGRPOTrainer

    image = Image.new("RGB", (64, 48))
    prompt = build_prompt("grounding", family="qwen3_5", question="cat")
    dataset = Dataset.from_dict({"prompt": [prompt] * 2, "image": [image] * 2})
    args = PerceptionGRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, max_completion_length=4,
        max_steps=1, bf16=False, gradient_checkpointing=False, report_to="none", use_cpu=True,
        chat_template_kwargs=chat_template_kwargs,
    )  # fmt: skip
    trainer = PerceptionGRPOTrainer(tiny_checkpoints["qwen3_5"], get_reward("iou"), args=args, train_dataset=dataset)
    (ids,), _, _ = trainer._tokenize_prompts([prepare_multimodal_messages(prompt, images=[image])])
    assert trainer.processing_class.tokenizer.decode(ids).endswith("<|im_start|>assistant\n" + opening)

    # The warm start and held-out scoring of `trl-perception train` encode the same prompt as the rollouts.
    from trl_perception.warmstart import _encode

    inputs = _encode(trainer.processing_class, [{"prompt": prompt, "image": image}], None, chat_template_kwargs)
    assert trainer.processing_class.tokenizer.decode(
        inputs["input_ids"][0]
    ) == trainer.processing_class.tokenizer.decode(ids)

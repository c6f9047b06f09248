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
"""Rollout pictures: what the policy answers during training, drawn every N steps.

For a few prompts of a training batch, [`RolloutPicturesCallback`] draws one picture per prompt: one panel per
rollout, each with the image, the ground truth (green) and the rollout's parsed prediction (red: boxes for grounding
and detection, boxes or the count for counting, the text for OCR), its reward, the value of every reward function and
its advantage. Completions are parsed and mapped to original pixels by the evaluation's scorers
([`trl_perception.eval.scoring`]: the one parser and the one geometry), in the frame, box syntax and options of the
run's reward for the row's task, and drawn by [`trl_perception.eval.visualize.draw_boxes`].

Files, in the run directory (`output_dir`):

| file | content |
|---|---|
| `rollouts/step_000050/prompt_00.png` | the picture of the first drawn prompt of training step 50 |
| `rollouts/step_000050/prompt_00.json` | what it shows: row id, task, ground truth, and per rollout the completion, the parsed value (model frame), the prediction (original pixels), the score, every reward, the total reward and the advantage |

The step is the training step the rollouts are trained on: its reward is the `reward` of `metrics.json` at that step.
Pictures also go to every tracker `report_to` names that is installed (`trackio`, `wandb`, `tensorboard`), under
`rollouts/prompt_00`, ...; a tracker that is named but not importable is skipped with one warning.

Example:

```python
from trl_perception import PerceptionGRPOConfig

args = PerceptionGRPOConfig("runs/x", rollout_pictures_steps=25, rollout_pictures_prompts=4)  # 0 disables them
```
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback
from transformers.utils import logging


logger = logging.get_logger(__name__)

ROLLOUTS_DIR = "rollouts"
TRACKERS = ("trackio", "wandb", "tensorboard")
# A panel's long side: a 4 x 2 grid of 8 rollouts stays near 1600 x 900 px, cheap to encode and to upload.
PANEL_MAX_SIDE = 384
COLUMNS = 4


@dataclass
class RolloutBatch:
    """
    The rollouts of one generation batch of one process, as the trainer hands them to [`RolloutPicturesCallback`].

    Args:
        rows: One dataset row per completion (its columns, plus `model_family` and `model_image_sizes` as the rewards
            get them); the `num_generations` completions of a prompt are consecutive.
        completions: The completion texts.
        rewards: Per completion, the value of each reward function (`None` where a reward does not apply).
        reward_names, reward_weights: The reward functions' names and weights, in the order of `rewards`.
        advantages: Per completion, the advantage it is trained with.
        num_generations: Completions per prompt.
        reward_funcs: The reward functions; the first perception reward of a row's task gives the frame, box syntax
            and options its completions are parsed with.
    """

    rows: list[dict[str, Any]]
    completions: list[str]
    rewards: list[list[float | None]]
    reward_names: list[str]
    reward_weights: list[float]
    advantages: list[float]
    num_generations: int
    reward_funcs: list[Any] = field(default_factory=list)


def infer_task(row: dict[str, Any]) -> str | None:
    """
    The row's `task` column, else the task its ground truth implies: `text` -> OCR, `count` -> counting, boxes with
    `category_ids` -> detection, one box -> grounding; `None` when it has no perception ground truth.

    >>> infer_task({"boxes": [[0, 0, 1, 1]]}), infer_task({"count": 3}), infer_task({"prompt": "hi"})
    ('grounding', 'counting', None)
    """
    if row.get("task"):
        return str(row["task"])
    if row.get("text") is not None:
        return "ocr"
    if row.get("count") is not None:
        return "counting"
    boxes = row.get("boxes")
    if boxes is not None and len(boxes):
        return "detection" if row.get("category_ids") is not None and len(row["category_ids"]) else "grounding"
    return None


def _perception_rewards(reward_funcs: Sequence[Any]):
    """(task, reward) for every perception reward, routers' task rewards included."""
    from trl_perception.rewards import PerceptionReward
    from trl_perception.rewards._router import TaskRouterReward

    for func in reward_funcs:
        if isinstance(func, TaskRouterReward):
            for task, reward in func.rewards.items():
                if isinstance(reward, PerceptionReward):
                    yield task, reward
        elif isinstance(func, PerceptionReward):
            yield func.task, func


def task_reward(reward_funcs: Sequence[Any], task: str | None):
    """The run's reward for `task` (a perception reward scoring that task, or any task), or `None`."""
    rewards = list(_perception_rewards(reward_funcs))
    for reward_task, reward in rewards:
        if reward_task == task:
            return reward
    for reward_task, reward in rewards:
        if reward_task is None and reward.default_task == task:
            return reward
    return None


def _image(row: dict[str, Any]):
    images = row.get("images")
    image = images[0] if images else row.get("image")
    if image is None:
        return None
    return image if image.mode == "RGB" else image.convert("RGB")


def rollout_geometry(row: dict[str, Any], image, reward=None):
    """
    `(ImageGeometry, frame, box syntax)` of a row's first image, as the reward scores it: the model-input size from
    `model_image_sizes` (else the family's `smart_resize`), the frame and syntax of `reward` (else of the row's
    `model_family`).
    """
    from trl_perception.families import get_family
    from trl_perception.geometry import ImageGeometry
    from trl_perception.rewards._base import FALLBACK_FAMILY

    family = row.get("model_family") or FALLBACK_FAMILY
    if reward is not None:
        spec = reward.geometry({"model_family": family})
        frame, syntax, budget = spec.frame.name, spec.box_syntax, (spec.min_pixels, spec.max_pixels, spec.factor)
    else:
        spec = get_family(family)
        frame, syntax, budget = spec.box_frame, spec.box_syntax, (spec.min_pixels, spec.max_pixels, spec.factor)
    width = int(row["width"]) if row.get("width") is not None else image.width
    height = int(row["height"]) if row.get("height") is not None else image.height
    sizes = row.get("model_image_sizes")
    if sizes:
        geometry = ImageGeometry(width, height, int(sizes[0][0]), int(sizes[0][1]))
    else:
        geometry = ImageGeometry.from_size(width, height, *budget)
    return geometry, frame, syntax


def score_rollout(task: str | None, text: str, row: dict[str, Any], geometry, frame: str, syntax, reward=None):
    """
    The evaluation's per-sample record of one completion ([`trl_perception.eval.scoring`]): `failure`, `parsed`
    (model frame), `prediction` (original pixels, a count or a text), `score`, `gt`; for counting, the parsed boxes
    in original pixels too (`boxes`). `None` for a row without perception ground truth.
    """
    import numpy as np

    from trl_perception.eval import scoring
    from trl_perception.parsing import parse_boxes

    out_of_image = getattr(reward, "out_of_image", "keep") or "keep"
    if task == "grounding":
        return scoring.score_grounding(text, row, geometry, frame, out_of_image, syntax)
    if task == "detection":
        return scoring.score_detection(
            text, row, geometry, frame, getattr(reward, "categories", None), out_of_image=out_of_image, syntax=syntax
        )
    if task == "ocr":
        return scoring.score_ocr(text, row)
    if task == "counting":
        source = getattr(reward, "source", "auto")
        record = scoring.score_counting(text, row, source if source in scoring.COUNT_MODES else "auto", syntax)
        parsed = parse_boxes(text, prefer=syntax)
        boxes: list[list[float]] = []
        if parsed.ok and len(parsed.value.coords):
            sane, valid = scoring._sanitize(np.asarray(parsed.value.boxes, dtype=np.float64), frame, geometry, "keep")
            original = scoring._to_original(sane, frame, geometry)
            boxes = [b.tolist() for b, ok in zip(original, valid) if ok and np.isfinite(b).all()]
        return {**record, "boxes": boxes}
    return None


def _total(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    """TRL's reward: the weighted sum of the rewards that apply (`None` when none does)."""
    terms = [w * v for v, w in zip(values, weights) if v is not None and not math.isnan(v)]
    return sum(terms) if terms else None


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        content = prompt[-1].get("content") if isinstance(prompt[-1], dict) else prompt[-1]
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        return str(content)
    return ""


def _ground_truth(task: str | None, row: dict[str, Any]) -> dict[str, Any]:
    keys = {"grounding": ("boxes", "labels"), "detection": ("boxes", "labels", "category_ids")}
    keys |= {"counting": ("count", "boxes", "points"), "ocr": ("text",)}
    return {key: _plain(row.get(key)) for key in keys.get(task, ()) if row.get(key) is not None}


def _plain(value: Any) -> Any:
    """JSON-ready: numpy values as Python numbers, non-finite floats as `None`."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def prompt_records(batch: RolloutBatch, num_prompts: int) -> list[tuple[dict[str, Any], Any]]:
    """
    `(record, image)` for the first `num_prompts` prompts of `batch`: the record is what `prompt_XX.json` holds.
    A completion its task's scorer cannot score gets `failure: "error: ..."` (the picture still shows it).
    """
    out = []
    size = max(1, batch.num_generations)
    for start in range(0, len(batch.rows), size):
        if len(out) >= num_prompts:
            break
        indices = range(start, min(start + size, len(batch.rows)))
        row = batch.rows[start]
        image = _image(row)
        task = infer_task(row)
        reward = task_reward(batch.reward_funcs, task)
        geometry = frame = None
        if image is not None:
            geometry, frame, syntax = rollout_geometry(row, image, reward)
        rollouts = []
        for i in indices:
            values = [None if v is None or math.isnan(v) else float(v) for v in batch.rewards[i]]
            entry: dict[str, Any] = {
                "completion": batch.completions[i],
                "rewards": dict(zip(batch.reward_names, values)),
                "reward": _total(values, batch.reward_weights),
                "advantage": float(batch.advantages[i]),
            }
            if geometry is not None and task is not None:
                try:
                    scored = score_rollout(task, batch.completions[i], batch.rows[i], geometry, frame, syntax, reward)
                except ValueError as e:  # e.g. ground truth the scorer needs and the row lacks
                    scored = {"failure": f"error: {e}"[:200], "parsed": None, "prediction": None, "score": None}
                entry |= {k: _plain(v) for k, v in (scored or {}).items() if k != "gt"}
            rollouts.append(entry)
        record = {
            "id": row.get("id"),
            "task": task,
            "prompt": _prompt_text(row.get("prompt")),
            "image_size": [geometry.width, geometry.height] if geometry is not None else None,
            "model_image_size": [geometry.resized_width, geometry.resized_height] if geometry is not None else None,
            "frame": frame,
            "ground_truth": _ground_truth(task, row),
            "rollouts": rollouts,
        }
        out.append((record, image))
    return out


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _panel_caption(task: str | None, index: int, rollout: dict[str, Any], gt: dict[str, Any]) -> str:
    parts = " ".join(f"{name} {_fmt(value)}" for name, value in rollout["rewards"].items())
    lines = [
        f"#{index} reward {_fmt(rollout['reward'])}  advantage {_fmt(rollout['advantage'], signed=True)}",
        parts,
    ]
    failure = rollout.get("failure")
    if task == "grounding":
        lines.append(f"IoU {_fmt(rollout.get('score'))}" + (f" ({failure})" if failure else ""))
    elif task == "detection":
        n = len(rollout.get("prediction") or [])
        lines.append(f"{n} detections, recall@0.5 {_fmt(rollout.get('score'))}" + (f" ({failure})" if failure else ""))
    elif task == "counting":
        lines.append(
            f"count {rollout.get('prediction')} (GT {gt.get('count')})" + (f" ({failure})" if failure else "")
        )
    elif task == "ocr":
        lines.append(f"text {rollout.get('prediction')!r}" + (f" ({failure})" if failure else ""))
        lines.append(f"GT   {gt.get('text')!r}")
    text = " ".join(str(rollout["completion"]).split())
    lines.append(f"> {text}")
    return "\n".join(lines)


def draw_prompt_picture(record: dict[str, Any], image) -> Any:
    """The picture of one prompt record ([`prompt_records`]): one [`draw_boxes`] panel per rollout, tiled."""
    from PIL import Image

    from trl_perception.eval.visualize import draw_boxes, tile_pictures

    if image is None:  # a text-only row: captions on a blank panel
        image = Image.new("RGB", (PANEL_MAX_SIDE, PANEL_MAX_SIDE // 4), (255, 255, 255))
    task, gt = record["task"], record["ground_truth"]
    gt_boxes = gt.get("boxes") or []
    panels = []
    for index, rollout in enumerate(record["rollouts"]):
        prediction = rollout.get("prediction")
        pred_boxes, pred_labels = [], []
        if task == "grounding" and prediction is not None:
            pred_boxes = [prediction]
        elif task == "detection":
            pred_boxes = [d["bbox"] for d in prediction or []]
            pred_labels = [d["label"] for d in prediction or []]
        elif task == "counting":
            pred_boxes = rollout.get("boxes") or []
        panels.append(
            draw_boxes(
                image,
                gt_boxes=[b for b in gt_boxes if b is not None],
                pred_boxes=pred_boxes,
                gt_labels=gt.get("labels") or [] if task == "detection" else [],
                pred_labels=pred_labels,
                gt_points=gt.get("points") or [],
                caption=_panel_caption(task, index, rollout, gt),
                max_side=PANEL_MAX_SIDE,
            )
        )
    title = f"{record.get('id') or ''} [{task or 'no ground truth'}] {record['prompt']}".strip()
    return tile_pictures(panels, columns=COLUMNS, title=f"{title}   (GT green, prediction red)")


def _tensorboard_writers(callbacks: Sequence[Any]) -> list[Any]:
    """The `SummaryWriter` of transformers' `TensorBoardCallback` among `callbacks` (set once training began)."""
    return [cb.tb_writer for cb in callbacks if getattr(cb, "tb_writer", None) is not None]


class RolloutPicturesCallback(TrainerCallback):
    """
    Draws the rollouts of a few prompts every `every_steps` training steps (and at the first step of a run), into
    `rollouts/step_XXXXXX/` of the run directory and to the trackers of `report_to` (see the module docstring).

    [`PerceptionGRPOTrainer`] adds one when `rollout_pictures_steps > 0` (the default) unless `callbacks` already
    holds one, whose own settings then apply. The trainer hands it the batch on the main process only (multi-GPU:
    the main process draws its own share of the batch; nothing is gathered for it). A picture that fails to draw is
    skipped with a warning and counted in `failures`; training goes on.

    Args:
        every_steps (`int`, *optional*, defaults to `50`):
            Draw at the first generation of a run and then at the first generation of every `every_steps` steps.
        num_prompts (`int`, *optional*, defaults to `2`):
            Prompts drawn per drawing step (all their rollouts).
        output_dir (`str`, *optional*):
            The run directory; default: the trainer's `output_dir`.
        report_to (`list[str]`, *optional*):
            Trackers to send the pictures to; default: the trainer's `report_to`.

    Example:

    ```python
    >>> callback = RolloutPicturesCallback(every_steps=10, num_prompts=1)
    >>> callback.due(1)
    True

    ```
    """

    def __init__(
        self,
        every_steps: int = 50,
        num_prompts: int = 2,
        output_dir: str | None = None,
        report_to: Sequence[str] | None = None,
    ):
        if every_steps < 1 or num_prompts < 1:
            raise ValueError(
                f"RolloutPicturesCallback needs every_steps >= 1 and num_prompts >= 1 (got {every_steps}, "
                f"{num_prompts}); to disable the pictures set `rollout_pictures_steps=0`."
            )
        self.every_steps = int(every_steps)
        self.num_prompts = int(num_prompts)
        self.output_dir = output_dir
        self.report_to = None if report_to is None else list(report_to)
        self.failures = 0
        self.written: list[str] = []
        self._drawn_bucket: int | None = None
        self._pending: RolloutBatch | None = None
        self._writers: list[Any] = []
        self._warned: set[str] = set()

    def due(self, step: int) -> bool:
        """Whether the batch trained at `step` is to be drawn: the first of a run, then one per `every_steps`."""
        return self._drawn_bucket is None or step // self.every_steps != self._drawn_bucket

    def capture(self, batch: RolloutBatch, step: int, callbacks: Sequence[Any] = ()) -> None:
        """Keep `batch` (trained at `step`) for drawing at the end of the step; `callbacks` are searched for a
        TensorBoard writer."""
        self._drawn_bucket = step // self.every_steps
        self._pending = batch
        self._writers = _tensorboard_writers(callbacks)

    def on_step_end(self, args, state, control, **kwargs):
        batch, self._pending = self._pending, None
        if batch is None or not state.is_world_process_zero:
            return
        self.draw(batch, state.global_step, self.output_dir or args.output_dir, self.report_to or args.report_to)

    def draw(self, batch: RolloutBatch, step: int, output_dir: str, report_to: Sequence[str] | str | None = None):
        """Draw `batch` as the pictures of `step` under `output_dir`, send them to the trackers; returns the paths."""
        folder = os.path.join(output_dir, ROLLOUTS_DIR, f"step_{step:06d}")
        pictures: dict[str, tuple[Any, str]] = {}
        paths = []
        try:
            records = prompt_records(batch, self.num_prompts)
        except Exception as e:  # a diagnostic must not stop training
            self._warn_failure(f"reading the rollouts of step {step}", e)
            return []
        os.makedirs(folder, exist_ok=True)
        for index, (record, image) in enumerate(records):
            name = f"prompt_{index:02d}"
            try:
                picture = draw_prompt_picture(record, image)
                path = os.path.join(folder, f"{name}.png")
                picture.save(path)
                with open(os.path.join(folder, f"{name}.json"), "w", encoding="utf-8") as f:
                    json.dump({"step": step, "picture": f"{name}.png", **record}, f, indent=1, ensure_ascii=False)
            except Exception as e:
                self._warn_failure(f"drawing {name} of step {step}", e)
                continue
            paths.append(path)
            caption = f"step {step} {record.get('id') or ''} [{record['task']}]"
            pictures[f"{ROLLOUTS_DIR}/{name}"] = (picture, caption)
        self.written += paths
        if pictures:
            self.log_to_trackers(pictures, step, report_to)
        return paths

    def _warn_failure(self, what: str, error: Exception) -> None:
        self.failures += 1
        logger.warning(f"Rollout pictures: skipped {what}: {type(error).__name__}: {error}")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    def log_to_trackers(self, pictures: dict[str, tuple[Any, str]], step: int, report_to) -> None:
        """Send `{key: (picture, caption)}` to each tracker of `report_to` that is installed and running."""
        if isinstance(report_to, str):
            report_to = [report_to]
        names = [name for name in (report_to or []) if name in TRACKERS]
        if "all" in (report_to or []):
            names = list(TRACKERS)
        for name in names:
            try:
                _LOGGERS[name](self, pictures, step)
            except ImportError:
                self._warn_once(
                    name, f"Rollout pictures: `report_to` names {name!r}, which is not installed: skipped."
                )
            except Exception as e:
                self._warn_once(f"{name}-error", f"Rollout pictures: logging to {name} failed ({e}); skipped.")


def _log_wandb(callback: RolloutPicturesCallback, pictures, step: int) -> None:
    import wandb

    if wandb.run is None:
        return
    # "train/global_step" is the step metric transformers' WandbCallback declares.
    wandb.log({key: wandb.Image(p, caption=c) for key, (p, c) in pictures.items()} | {"train/global_step": step})


def _log_trackio(callback: RolloutPicturesCallback, pictures, step: int) -> None:
    import trackio

    trackio.log({key: trackio.Image(p, caption=c) for key, (p, c) in pictures.items()} | {"train/global_step": step})


def _log_tensorboard(callback: RolloutPicturesCallback, pictures, step: int) -> None:
    import numpy as np

    if not callback._writers:  # transformers' TensorBoardCallback opens its writer at the start of training
        import torch.utils.tensorboard  # noqa: F401  (raises ImportError without tensorboard)

        return
    for writer in callback._writers:
        for key, (picture, _) in pictures.items():
            writer.add_image(key, np.asarray(picture), step, dataformats="HWC")
        writer.flush()


_LOGGERS: dict[str, Callable[[RolloutPicturesCallback, dict, int], None]] = {
    "wandb": _log_wandb,
    "trackio": _log_trackio,
    "tensorboard": _log_tensorboard,
}

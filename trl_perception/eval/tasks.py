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
"""The evaluation task registry: one registration gives `trl-perception eval` a task's per-sample scoring, corpus
metric, pictures and results table (lm-evaluation-harness style; the runner has no list of task names).

The four built-in tasks (``grounding``, ``counting``, ``ocr``, ``detection``) are registered at the bottom of this
module with the same `register_eval_task` a user calls:

| hook | called as | returns |
|---|---|---|
| ``score_sample`` | ``score_sample(completion, row, context)`` once per sample | a dict with ``failure`` (a reason or ``None``), ``prediction`` (what the metric uses), ``score`` (per-sample number, higher is better) and ``gt``; any other JSON-serializable keys go to ``predictions.jsonl`` too |
| ``metric`` | ``metric(records, context)`` once per run | ``dict[str, Any]`` of corpus metrics; default: the metric registered under the task's name (`trl_perception.eval.metrics.register_metric`) applied to the records' predictions and ground truths |
| ``draw`` | ``draw(image, row, record)`` for the first samples | a PIL image for ``visualizations/sample_NNN.png``, or ``None`` |
| ``plot`` | ``plot(records, folder)`` once per run | the files it wrote into ``visualizations/`` |
| ``table`` | ``table(metrics, model, split)`` | markdown lines for ``results.md`` (default: one row of every numeric metric) |
| ``notes`` | ``notes(context, metrics)`` | lines added under the table |
| ``prepare`` | ``prepare(rows, config)`` before generation | any state, given to the other hooks as ``context.state`` |

Example (a task whose answer is one point; a point inside the GT box is correct):

```python
>>> from trl_perception.eval.tasks import get_eval_task, register_eval_task, unregister_eval_task
>>> from trl_perception.parsing import parse_points
>>> def score_point(completion, row, context):
...     parsed = parse_points(completion)
...     x1, y1, x2, y2 = row["boxes"][0]
...     if not parsed.ok:
...         return {"failure": parsed.error, "prediction": None, "score": 0.0, "gt": [x1, y1, x2, y2]}
...     x, y = parsed.value.points[0].tolist()
...     hit = float(x1 <= x <= x2 and y1 <= y <= y2)
...     return {"failure": None, "prediction": [x, y], "score": hit, "gt": [x1, y1, x2, y2]}
>>> task = register_eval_task(
...     "point_in_box_example",
...     score_sample=score_point,
...     metric=lambda records, context: {"accuracy": sum(r["score"] for r in records) / len(records)},
...     max_new_tokens=32,
... )
>>> get_eval_task("point_in_box_example").max_new_tokens
32
>>> unregister_eval_task("point_in_box_example")

```
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl_perception.eval import metrics as M
from trl_perception.eval import scoring
from trl_perception.eval import visualize as V
from trl_perception.families import get_family
from trl_perception.geometry import ImageGeometry, box_convert


# The keys every `score_sample` result must have (the runner and the metric read them).
RECORD_KEYS = ("failure", "prediction", "score", "gt")


@dataclass
class EvalContext:
    """What a task's hooks get besides the completion and the row.

    Attributes:
        config: the run's `trl_perception.eval.EvalConfig` (``frame``, ``family``, ``out_of_image``, ``count_mode``,
            ``fox_order``, ``output_dir``, ...).
        geometry: per sample (``score_sample`` only): original image size and the model-input size, for
            `trl_perception.geometry.convert_boxes` / ``convert_points`` between ``config.frame`` and original pixels.
        state: what the task's ``prepare`` returned (``None`` without one).
        extra: a corpus ``metric`` may put entries here; they become top-level keys of ``metrics.json``.
    """

    config: Any
    geometry: ImageGeometry | None = None
    state: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> str:
        """The frame of the model's coordinates (`trl_perception.geometry` frame name)."""
        return self.config.frame

    @property
    def syntax(self) -> str | None:
        """The model family's box syntax (try it first when parsing), or ``None`` without a family."""
        return get_family(self.config.family).box_syntax if self.config.family is not None else None


@dataclass(frozen=True)
class EvalTask:
    """One registered evaluation task (see the module docstring for the hooks)."""

    name: str
    score_sample: Callable[[str, Mapping[str, Any], EvalContext], dict[str, Any]]
    metric: Callable[[list[dict[str, Any]], EvalContext], dict[str, Any]]
    draw: Callable[[Any, Mapping[str, Any], dict[str, Any]], Any] | None = None
    plot: Callable[[list[dict[str, Any]], Path], list[Path]] | None = None
    table: Callable[[dict[str, Any], str, str | None], list[str]] | None = None
    notes: Callable[[EvalContext, dict[str, Any]], list[str]] | None = None
    prepare: Callable[[Any, Any], Any] | None = None
    max_new_tokens: int = 512
    skip_special_tokens: bool = True
    description: str = ""


_EVAL_TASKS: dict[str, EvalTask] = {}


def register_eval_task(
    name: str,
    *,
    score_sample: Callable[[str, Mapping[str, Any], EvalContext], dict[str, Any]],
    metric: Callable[[list[dict[str, Any]], EvalContext], dict[str, Any]] | str | None = None,
    draw: Callable[[Any, Mapping[str, Any], dict[str, Any]], Any] | None = None,
    plot: Callable[[list[dict[str, Any]], Path], list[Path]] | None = None,
    table: Callable[[dict[str, Any], str, str | None], list[str]] | None = None,
    notes: Callable[[EvalContext, dict[str, Any]], list[str]] | None = None,
    prepare: Callable[[Any, Any], Any] | None = None,
    max_new_tokens: int = 512,
    skip_special_tokens: bool = True,
    description: str = "",
) -> EvalTask:
    """Register the evaluation task ``name``; `EvalConfig(task=name)` and ``trl-perception eval --task name`` then
    work. Raises on a duplicate name.

    ``metric`` is a function ``(records, context) -> dict``, or the name of a metric registered with
    `trl_perception.eval.metrics.register_metric` (a function ``(predictions, references) -> dict``); ``None`` means
    the metric registered under ``name``. ``max_new_tokens`` and ``skip_special_tokens`` are the task's generation
    defaults (``--max_new_tokens``, ``--skip_special_tokens auto``).
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"An evaluation task name must be a non-empty string without surrounding spaces: {name!r}.")
    if name in _EVAL_TASKS:
        raise ValueError(f"Evaluation task {name!r} is already registered.")
    if not callable(score_sample):
        raise ValueError(f"Evaluation task {name!r}: `score_sample` must be a function (completion, row, context).")
    if metric is None or isinstance(metric, str):
        metric = _registered_metric(metric or name)
    elif not callable(metric):
        raise ValueError(f"Evaluation task {name!r}: `metric` must be a function (records, context) or a name.")
    task = EvalTask(
        name=name,
        score_sample=score_sample,
        metric=metric,
        draw=draw,
        plot=plot,
        table=table,
        notes=notes,
        prepare=prepare,
        max_new_tokens=int(max_new_tokens),
        skip_special_tokens=bool(skip_special_tokens),
        description=description,
    )
    _EVAL_TASKS[name] = task
    return task


def unregister_eval_task(name: str) -> None:
    """Remove the evaluation task ``name`` (e.g. at the end of a notebook experiment)."""
    get_eval_task(name)
    del _EVAL_TASKS[name]


def get_eval_task(name: str) -> EvalTask:
    """The evaluation task registered under ``name``; raises a `ValueError` listing the registered ones."""
    try:
        return _EVAL_TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown evaluation task {name!r}; registered: {', '.join(list_eval_tasks())}. A task of your own: "
            "`trl_perception.eval.register_eval_task` in a module that `--task_modules` (or the recipe's "
            "`reward_modules`) imports."
        ) from None


def list_eval_tasks() -> list[str]:
    """Names of the registered evaluation tasks, in registration order."""
    return list(_EVAL_TASKS)


def _registered_metric(metric_name: str) -> Callable[[list[dict[str, Any]], EvalContext], dict[str, Any]]:
    """A ``(records, context)`` metric calling the registered ``(predictions, references)`` metric, looked up when it
    runs (so the metric may be registered after the task)."""

    def metric(records: list[dict[str, Any]], context: EvalContext) -> dict[str, Any]:
        return M.get_metric(metric_name)([r["prediction"] for r in records], [r["gt"] for r in records])

    metric.__name__ = f"metric_{metric_name}"
    return metric


def check_record(task: str, row: Mapping[str, Any], scored: Any) -> dict[str, Any]:
    """``scored`` if it is a dict with the `RECORD_KEYS`; otherwise a `ValueError` naming the task and row."""
    if not isinstance(scored, dict):
        raise ValueError(
            f"Task {task!r}, row {row.get('id')!r}: score_sample returned {type(scored).__name__}, not dict."
        )
    missing = [key for key in RECORD_KEYS if key not in scored]
    if missing:
        raise ValueError(f"Task {task!r}, row {row.get('id')!r}: score_sample's result lacks {missing}.")
    if not isinstance(scored["score"], (int, float)) or isinstance(scored["score"], bool):
        raise ValueError(f"Task {task!r}, row {row.get('id')!r}: `score` must be a number, got {scored['score']!r}.")
    return scored


def generic_table(metrics: dict[str, Any], model: str, split: str | None) -> list[str]:
    """One row of every numeric metric, as computed (no scaling): the table of a task without its own."""
    keys = [
        k
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("num_samples", "parse_failure_rate")
    ]
    cells = ["–" if metrics[k] is None or (isinstance(metrics[k], float) and math.isnan(metrics[k])) else
             f"{metrics[k]:.4g}" for k in keys]  # fmt: skip
    return [
        "| Model | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
        f"| {model} | " + " | ".join(cells) + " |",
    ]


def pct(value: Any) -> str:
    """A fraction as a percentage with one decimal; ``–`` for missing, NaN or pycocotools' −1."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value < 0:
        return "–"
    return f"{100 * value:.1f}"


# ---------------------------------------------------------------------------------------------------------------------
# The built-in tasks (Perception-R1's evaluation settings: §8 of the method notes)
# ---------------------------------------------------------------------------------------------------------------------


def _frame_note(context: EvalContext, metrics: dict[str, Any]) -> list[str]:
    return [f"Predicted boxes are read in the {context.frame!r} frame and mapped back to original pixels."]


def _score_grounding(completion: str, row: Mapping[str, Any], context: EvalContext) -> dict[str, Any]:
    return scoring.score_grounding(
        completion, row, context.geometry, context.frame, context.config.out_of_image, context.syntax
    )


def _grounding_table(m: dict[str, Any], model: str, split: str | None) -> list[str]:
    return [
        "| Model | Acc@0.5 | Acc@0.75 | Acc@0.95 | Avg |",
        "|---|---|---|---|---|",
        f"| {model} | {pct(m['acc@0.5'])} | {pct(m['acc@0.75'])} | {pct(m['acc@0.95'])} | {pct(m['avg'])} |",
        "",
        "Acc@τ sweep (IoU ≥ τ, inclusive):",
        "",
        "| τ | " + " | ".join(f"{t:g}" for t in M.IOU_SWEEP) + " |",
        "|---|" + "---|" * len(M.IOU_SWEEP),
        "| Acc | " + " | ".join(pct(m[f"acc@{t:g}"]) for t in M.IOU_SWEEP) + " |",
        "",
        f"Mean IoU: {pct(m['mean_iou'])}.",
    ]


def _score_counting(completion: str, row: Mapping[str, Any], context: EvalContext) -> dict[str, Any]:
    return scoring.score_counting(completion, row, context.config.count_mode, context.syntax)


def _counting_table(m: dict[str, Any], model: str, split: str | None) -> list[str]:
    mae = "–" if m["mae"] is None or (isinstance(m["mae"], float) and math.isnan(m["mae"])) else f"{m['mae']:.2f}"
    return [
        f"| Model | {split or 'accuracy'} |",
        "|---|---|",
        f"| {model} | {pct(m['accuracy'])} |",
        "",
        f"Exact-match accuracy (%). MAE over parsed samples: {mae}.",
    ]


def _counting_plot(records: list[dict[str, Any]], folder: Path) -> list[Path]:
    path = folder / "counting_confusion.png"
    V.counting_confusion_plot([r["prediction"] for r in records], [r["gt"] for r in records], path)
    return [path]


def _score_ocr(completion: str, row: Mapping[str, Any], context: EvalContext) -> dict[str, Any]:
    return scoring.score_ocr(completion, row)


def _ocr_metric(records: list[dict[str, Any]], context: EvalContext) -> dict[str, Any]:
    return M.ocr_metrics(
        [r["prediction"] for r in records], [r["gt"] for r in records], fox_order=context.config.fox_order
    )


def _ocr_table(m: dict[str, Any], model: str, split: str | None) -> list[str]:
    keys = ("edit_distance", "f1", "precision", "recall", "bleu", "meteor")
    return [
        "| Model | Edit dist ↓ | F1 ↑ | Precision ↑ | Recall ↑ | BLEU ↑ | METEOR ↑ |",
        "|---|---|---|---|---|---|---|",
        f"| {model} | " + " | ".join(pct(m[k]) for k in keys) + " |",
    ]


def _ocr_notes(context: EvalContext, metrics: dict[str, Any]) -> list[str]:
    notes = []
    if metrics.get("meteor_wordnet") == "no_synonym_stage":
        notes.append(
            "METEOR without synonym stage: nltk's WordNet corpus is not installed, so words align by exact and "
            "Porter-stem matches only (a lower bound of the usual METEOR)."
        )
    notes.append(
        "OCR argument order: Fox/GOT (precision and recall swapped, GT as BLEU/METEOR hypothesis)."
        if context.config.fox_order
        else "OCR argument order: conventional (model output is the hypothesis), as Perception-R1."
    )
    return notes


def _detection_prepare(rows, config) -> tuple[Any, Any]:
    """COCO GT (a ``COCO`` object) and its category table: ``config.coco_gt``, else the builder's annotation file for
    the split, else built from the rows."""
    from trl_perception.data import dataset_metadata

    meta = dataset_metadata(rows)
    gt = config.coco_gt
    if gt is None:
        files = meta.get("annotation_files") or {}
        split = str(rows.split) if rows.split is not None else None
        path = files.get(split) if split in files else (next(iter(files.values())) if len(files) == 1 else None)
        if path is not None and os.path.isfile(path):
            gt = path
    if gt is None:
        columns = [c for c in rows.column_names if c != "image"]  # no need to decode images here
        gt = M.coco_gt_from_rows(rows.select_columns(columns), categories=meta.get("categories"))
    gt = M.load_coco_gt(gt)
    return gt, scoring.category_table(gt.dataset["categories"])


def _score_detection(completion: str, row: Mapping[str, Any], context: EvalContext) -> dict[str, Any]:
    _, categories = context.state
    scored = scoring.score_detection(
        completion,
        row,
        context.geometry,
        context.frame,
        categories,
        out_of_image=context.config.out_of_image,
        syntax=context.syntax,
    )
    scored["image_id"] = int(row["image_id"]) if row.get("image_id") is not None else None
    return scored


def detection_results(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """COCO results (``xywh`` in original pixels, score 1.0, model output order) from detection records."""
    results = []
    for record in records:
        predictions = record["prediction"]
        if not predictions:
            continue
        # One conversion per image, not per box: at COCO-val size (36k boxes) per-box calls cost a second.
        boxes = box_convert([det["bbox"] for det in predictions], "xyxy", "xywh").tolist()
        for det, xywh in zip(predictions, boxes, strict=True):
            results.append(
                {
                    "image_id": record["image_id"],
                    "category_id": det["category_id"],
                    "bbox": xywh,
                    "score": det["score"],
                }
            )
    return results


def _detection_metric(records: list[dict[str, Any]], context: EvalContext) -> dict[str, Any]:
    from trl_perception.eval.runner import strict_json

    # Rows without an image id get their position, as `coco_gt_from_rows` numbers them.
    for index, record in enumerate(records):
        if record["image_id"] is None:
            record["image_id"] = index
    results = detection_results(records)
    with open(Path(context.config.output_dir) / "coco_results.json", "w", encoding="utf-8") as f:
        # `json.dumps` runs the C encoder; `json.dump` to a file the pure-Python one (5x slower on 36k boxes).
        f.write(json.dumps(strict_json(results), allow_nan=False))
    coco_gt, _ = context.state
    metrics = M.coco_detection_metrics(coco_gt, results, image_ids=[r["image_id"] for r in records])
    context.extra["pycocotools_summary"] = metrics.pop("summary")
    unknown = sum(r.get("num_unknown_labels", 0) for r in records)
    total = unknown + sum(len(r["prediction"]) for r in records)
    metrics["unknown_label_rate"] = unknown / total if total else 0.0
    return metrics


def _detection_table(m: dict[str, Any], model: str, split: str | None) -> list[str]:
    return [
        "| Model | AP | AP50 | AP75 | APs | APm | APl |",
        "|---|---|---|---|---|---|---|",
        f"| {model} | " + " | ".join(pct(m[k]) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")) + " |",
        "",
        "| AR@1 | AR@10 | AR@100 | ARs | ARm | ARl |",
        "|---|---|---|---|---|---|",
        "| " + " | ".join(pct(m[k]) for k in ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl")) + " |",
    ]


def _detection_notes(context: EvalContext, metrics: dict[str, Any]) -> list[str]:
    return [
        "Confidence policy: every predicted box has score 1.0 (Perception-R1 parity); ties keep the model's output "
        "order, so AP depends on it. At most 100 detections per image (the first 100 in output order).",
        *_frame_note(context, metrics),
    ]


register_eval_task(
    "grounding",
    score_sample=_score_grounding,
    draw=V.draw_grounding,
    table=_grounding_table,
    notes=_frame_note,
    max_new_tokens=512,
    skip_special_tokens=False,  # Qwen2-VL's <|box_start|> tokens carry the answer
    description="referring-expression grounding: Acc@0.5/0.75/0.95 of the first box (RefCOCO/+/g)",
)
register_eval_task(
    "counting",
    score_sample=_score_counting,
    draw=V.draw_counting,
    plot=_counting_plot,
    table=_counting_table,
    max_new_tokens=512,
    skip_special_tokens=False,
    description="object counting: exact-match accuracy (PixMo-Count)",
)
register_eval_task(
    "ocr",
    score_sample=_score_ocr,
    metric=_ocr_metric,
    table=_ocr_table,
    notes=_ocr_notes,
    max_new_tokens=2048,
    skip_special_tokens=True,
    description="page OCR: edit distance, F1, precision, recall, BLEU, METEOR (Fox)",
)
register_eval_task(
    "detection",
    score_sample=_score_detection,
    metric=_detection_metric,
    draw=V.draw_detection,
    table=_detection_table,
    notes=_detection_notes,
    prepare=_detection_prepare,
    max_new_tokens=4096,
    skip_special_tokens=True,
    description="object detection: COCO AP/AR with pycocotools (COCO val2017)",
)

__all__ = [
    "EvalContext",
    "EvalTask",
    "check_record",
    "detection_results",
    "get_eval_task",
    "list_eval_tasks",
    "register_eval_task",
    "unregister_eval_task",
]

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
"""Evaluation runner: batches a dataset through a backend, scores every sample, writes a run directory.

Run directory (``output_dir``):

| file | content |
|---|---|
| ``metrics.json`` | corpus metrics (fractions in ``[0, 1]``), generation and failure statistics, run configuration |
| ``predictions.jsonl`` | one line per sample: id, raw completion, parsed value, prediction in original pixels, failure
  reason, score, ground truth, prompt/completion token counts |
| ``results.md`` | the metrics laid out like the paper's tables (× 100) |
| ``visualizations/`` | predicted vs GT boxes for a handful of samples; counting confusion plot |
| ``coco_results.json`` | (detection) the exact COCO results list given to pycocotools |

Example:

```python
from trl_perception.eval import EvalConfig, evaluate
from trl_perception.eval.backends import make_backend
backend = make_backend("hf", model_path, max_new_tokens=64)
result = evaluate(dataset, EvalConfig(task="grounding", output_dir="runs/refcoco-val"), backend)
result.metrics["acc@0.5"]
```
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trl_perception.eval import metrics as M
from trl_perception.eval.scoring import (
    COUNT_MODES,
    category_table,
    score_counting,
    score_detection,
    score_grounding,
    score_ocr,
)
from trl_perception.families import get_family, resolve_family
from trl_perception.geometry import ImageGeometry, box_convert, get_frame


logger = logging.getLogger("trl_perception.eval")

EVAL_TASKS = ("grounding", "counting", "ocr", "detection")

# Perception-R1's evaluation settings (§8 of the method notes): generation budget and special-token decoding.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "grounding": {"max_new_tokens": 512, "skip_special_tokens": False},
    "counting": {"max_new_tokens": 512, "skip_special_tokens": False},
    "ocr": {"max_new_tokens": 2048, "skip_special_tokens": True},
    "detection": {"max_new_tokens": 4096, "skip_special_tokens": True},
}


@dataclass
class EvalConfig:
    """Options of one evaluation run.

    Args:
        task: ``"grounding"``, ``"counting"``, ``"ocr"`` or ``"detection"``.
        output_dir: run directory (created).
        frame: coordinate frame of the model's boxes (``"grid_1000"``, ``"resized"`` model-input pixels,
            ``"original"``, ``"normalized"``, a registered frame, or a family name meaning its box frame);
            `resolve_frame` picks it from the model type.
        family: model family (`trl_perception.families`); its box syntax is tried first when parsing. ``None``: the
            built-in order of ``"auto"`` parsing.
        batch_size: samples per generation call.
        limit: evaluate only the first ``limit`` rows (in dataset order); ``None`` = all.
        count_mode: counting only, see `trl_perception.eval.scoring.parse_count_prediction`.
        out_of_image: grounding/detection, predicted boxes outside the image are kept (``"keep"``, the paper's
            evaluation), clipped (``"clip"``, the rewards' default) or rejected (``"reject"``).
        fox_order: OCR only, compute precision/recall/BLEU/METEOR in Fox/GOT's swapped argument order.
        coco_gt: detection only, COCO GT (path or dict); default: the builder's annotation file, else built from rows.
        num_visualizations: samples drawn in ``visualizations/`` (0 disables pictures).
        progress: show a tqdm progress bar.
        run_info: free-form provenance written to ``metrics.json`` (model, dataset, backend, …).
    """

    task: str
    output_dir: str
    frame: str = "qwen2_5_vl"
    family: str | None = None
    batch_size: int = 8
    limit: int | None = None
    count_mode: str = "auto"
    out_of_image: str = "keep"
    fox_order: bool = False
    coco_gt: Any = None
    num_visualizations: int = 8
    progress: bool = True
    run_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in EVAL_TASKS:
            raise ValueError(f"Unknown task {self.task!r}; expected one of {EVAL_TASKS}.")
        self.frame = get_frame(self.frame).name  # a family name stands for its box frame
        if self.family is not None:
            self.family = get_family(self.family).name  # raises, listing the registered families
        if self.count_mode not in COUNT_MODES:
            raise ValueError(f"Unknown count mode {self.count_mode!r}; expected one of {COUNT_MODES}.")
        if self.out_of_image not in ("keep", "clip", "reject"):
            raise ValueError(f"out_of_image must be 'keep', 'clip' or 'reject', got {self.out_of_image!r}.")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be non-negative.")


@dataclass
class EvalResult:
    """What `evaluate` returns: corpus metrics, per-sample records and the run directory."""

    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    output_dir: Path
    summary: dict[str, Any]


def resolve_frame(model, frame: str = "auto") -> str:
    """The coordinate frame of ``model``'s boxes: ``frame`` itself unless ``"auto"``, else its family's box frame
    (recognised from ``config.model_type`` through `trl_perception.families`)."""
    if frame != "auto":
        return get_frame(frame).name
    return resolve_family("auto", model=model).box_frame


def _select_rows(dataset, task: str, limit: int | None):
    """Rows of ``task`` (mixed-task datasets are filtered on the ``task`` column), then the first ``limit``."""
    if "task" in dataset.column_names:
        tasks = dataset["task"]
        if any(t != task for t in tasks):
            keep = [i for i, t in enumerate(tasks) if t == task]
            if not keep:
                raise ValueError(f"The dataset has no rows of task {task!r} (tasks present: {sorted(set(tasks))}).")
            dataset = dataset.select(keep)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset


def _rgb(image):
    return image if image.mode == "RGB" else image.convert("RGB")


def _categories_for(dataset, config: EvalConfig) -> tuple[Any, Any]:
    """COCO GT (a ``COCO`` object) and its category table for detection."""
    from trl_perception.data import dataset_metadata

    meta = dataset_metadata(dataset)
    gt = config.coco_gt
    if gt is None:
        files = meta.get("annotation_files") or {}
        split = str(dataset.split) if dataset.split is not None else None
        path = files.get(split) if split in files else (next(iter(files.values())) if len(files) == 1 else None)
        if path is not None and os.path.isfile(path):
            gt = path
    if gt is None:
        columns = [c for c in dataset.column_names if c != "image"]  # no need to decode images here
        gt = M.coco_gt_from_rows(dataset.select_columns(columns), categories=meta.get("categories"))
    gt = M.load_coco_gt(gt)
    return gt, category_table(gt.dataset["categories"])


def evaluate(dataset, config: EvalConfig, backend) -> EvalResult:
    """Generate with ``backend`` over ``dataset`` (shared schema), score every sample, write the run directory.

    ``dataset`` is a `datasets.Dataset` with the shared columns (``prompt``, ``image``, ``width``, ``height`` and the
    task's GT). ``backend`` is anything with ``generate(prompts, images) -> list[Generation]`` (see `backends`).
    """
    from tqdm.auto import tqdm

    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = _select_rows(dataset, config.task, config.limit)
    coco_gt, categories = _categories_for(rows, config) if config.task == "detection" else (None, None)

    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
        bar = tqdm(total=len(rows), desc=f"eval {config.task}", disable=not config.progress, unit="sample")
        for start in range(0, len(rows), config.batch_size):
            batch = rows[start : start + config.batch_size]
            n = len(batch["prompt"])
            images = [_rgb(img) for img in batch["image"]]
            generations = backend.generate(batch["prompt"], images)
            for i in range(n):
                row = {k: v[i] for k, v in batch.items() if k != "image"}
                record = _score(config, row, images[i], generations[i], categories)
                records.append(record)
                f.write(json.dumps(strict_json(record), ensure_ascii=False, allow_nan=False) + "\n")
            bar.update(n)
        bar.close()
    elapsed = time.perf_counter() - started

    metrics, extra = _corpus_metrics(config, rows, records, coco_gt)
    summary = {
        "task": config.task,
        "num_samples": len(records),
        "metrics": {k: M.finite_or_none(v) for k, v in metrics.items()},
        "failures": dict(Counter(r["failure"] for r in records if r["failure"] is not None)),
        "generation": (generation := _generation_stats(records, elapsed)),
        "notes": _notes(config, metrics, generation),
        "config": {k: v for k, v in asdict(config).items() if k not in ("coco_gt", "run_info", "progress")},
        "run": config.run_info,
        **extra,
    }
    with open(out_dir / "metrics.json", "w", encoding="utf-8") as f:
        json.dump(strict_json(summary), f, indent=2, ensure_ascii=False, allow_nan=False)
    (out_dir / "results.md").write_text(results_markdown(summary), encoding="utf-8")
    if config.num_visualizations > 0 and records:
        from trl_perception.eval.visualize import save_visualizations

        save_visualizations(config.task, rows, records, out_dir / "visualizations", config.num_visualizations)
    return EvalResult(metrics=metrics, records=records, output_dir=out_dir, summary=summary)


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float (NaN, +-inf) replaced by `None`: the run directory holds strict JSON only
    (Python's `json` would write `NaN`/`Infinity`, which other readers reject)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def _score(config: EvalConfig, row: dict, image, generation, categories) -> dict[str, Any]:
    width, height = int(row["width"]), int(row["height"])
    if image.size != (width, height):
        raise ValueError(
            f"Row {row.get('id')!r}: image is {image.size[0]}x{image.size[1]} but width/height say {width}x{height}; "
            "ground truth must be in the pixels of the image the model sees."
        )
    geometry = ImageGeometry(width, height, *generation.model_image_size)
    text = generation.text
    syntax = get_family(config.family).box_syntax if config.family is not None else None
    if config.task == "grounding":
        scored = score_grounding(text, row, geometry, config.frame, config.out_of_image, syntax)
    elif config.task == "counting":
        scored = score_counting(text, row, config.count_mode, syntax)
    elif config.task == "ocr":
        scored = score_ocr(text, row)
    else:
        scored = score_detection(
            text, row, geometry, config.frame, categories, out_of_image=config.out_of_image, syntax=syntax
        )
    record = {"id": row.get("id"), "completion": text, **scored}
    if config.task == "detection":
        record["image_id"] = int(row["image_id"]) if row.get("image_id") is not None else None
    record.update(
        num_prompt_tokens=generation.num_prompt_tokens,
        num_completion_tokens=generation.num_completion_tokens,
        finish_reason=generation.finish_reason,
        model_image_size=list(generation.model_image_size),
    )
    return record


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


def _corpus_metrics(config: EvalConfig, rows, records, coco_gt) -> tuple[dict[str, Any], dict[str, Any]]:
    task = config.task
    if task == "grounding":
        return M.grounding_metrics([r["prediction"] for r in records], [r["gt"] for r in records]), {}
    if task == "counting":
        return M.counting_metrics([r["prediction"] for r in records], [r["gt"] for r in records]), {}
    if task == "ocr":
        metrics = M.ocr_metrics(
            [r["prediction"] for r in records], [r["gt"] for r in records], fox_order=config.fox_order
        )
        metrics["parse_failure_rate"] = _failure_rate(records)
        return metrics, {}
    # Detection: rows without an image id get their position, as `coco_gt_from_rows` numbers them.
    for index, record in enumerate(records):
        if record["image_id"] is None:
            record["image_id"] = index
    results = detection_results(records)
    with open(Path(config.output_dir) / "coco_results.json", "w", encoding="utf-8") as f:
        # `json.dumps` runs the C encoder; `json.dump` to a file the pure-Python one (5x slower on 36k boxes).
        f.write(json.dumps(strict_json(results), allow_nan=False))
    image_ids = [r["image_id"] for r in records]
    metrics = M.coco_detection_metrics(coco_gt, results, image_ids=image_ids)
    summary_text = metrics.pop("summary")
    metrics["parse_failure_rate"] = _failure_rate(records)
    metrics["unknown_label_rate"] = _unknown_label_rate(records)
    return metrics, {"pycocotools_summary": summary_text}


def _failure_rate(records) -> float:
    return sum(r["failure"] is not None for r in records) / len(records) if records else float("nan")


def _unknown_label_rate(records) -> float:
    unknown = sum(r.get("num_unknown_labels", 0) for r in records)
    total = unknown + sum(len(r["prediction"]) for r in records)
    return unknown / total if total else 0.0


def _generation_stats(records, elapsed: float) -> dict[str, Any]:
    if not records:
        return {"seconds": elapsed}
    return {
        "seconds": round(elapsed, 3),
        "samples_per_second": round(len(records) / elapsed, 3) if elapsed > 0 else None,
        "mean_prompt_tokens": float(np.mean([r["num_prompt_tokens"] for r in records])),
        "mean_completion_tokens": float(np.mean([r["num_completion_tokens"] for r in records])),
        "truncated_rate": sum(r["finish_reason"] == "length" for r in records) / len(records),
    }


def _notes(config: EvalConfig, metrics: dict[str, Any], generation: dict[str, Any]) -> list[str]:
    notes = []
    truncated = generation.get("truncated_rate") or 0.0
    if truncated > 0:
        # A cut-off answer is usually a parse failure or a partial box list: the metric then measures the budget.
        notes.append(
            f"Warning: {100 * truncated:.1f}% of the completions stopped at the generation budget (finish_reason "
            "'length') and were scored as cut off; raise --max-new-tokens."
        )
    if config.task == "ocr":
        if metrics.get("meteor_wordnet") == "no_synonym_stage":
            notes.append(
                "METEOR without synonym stage: nltk's WordNet corpus is not installed, so words align by exact and "
                "Porter-stem matches only (a lower bound of the usual METEOR)."
            )
        notes.append(
            "OCR argument order: Fox/GOT (precision and recall swapped, GT as BLEU/METEOR hypothesis)."
            if config.fox_order
            else "OCR argument order: conventional (model output is the hypothesis), as Perception-R1."
        )
    if config.task == "detection":
        notes.append(
            "Confidence policy: every predicted box has score 1.0 (Perception-R1 parity); ties keep the model's output "
            "order, so AP depends on it. At most 100 detections per image (the first 100 in output order)."
        )
    if config.task in ("grounding", "detection"):
        notes.append(f"Predicted boxes are read in the {config.frame!r} frame and mapped back to original pixels.")
    return notes


# ---------------------------------------------------------------------------------------------------------------------
# Markdown tables laid out like the paper's
# ---------------------------------------------------------------------------------------------------------------------


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value < 0:  # pycocotools' "no GT in this range"
        return "–"
    return f"{100 * value:.1f}"


def results_markdown(summary: dict[str, Any]) -> str:
    """The run's metrics as markdown tables with the paper's columns (values × 100, one decimal)."""
    task, m, run = summary["task"], summary["metrics"], summary.get("run", {})
    model = run.get("model_name") or os.path.basename(str(run.get("model", "model")).rstrip("/")) or "model"
    dataset = run.get("dataset", "dataset")
    split = run.get("split")
    title = f"{dataset}" + (f" / {split}" if split else "")
    lines = [f"# {task} evaluation: {title}", ""]
    if task == "grounding":
        lines += [
            "| Model | Acc@0.5 | Acc@0.75 | Acc@0.95 | Avg |",
            "|---|---|---|---|---|",
            f"| {model} | {_pct(m['acc@0.5'])} | {_pct(m['acc@0.75'])} | {_pct(m['acc@0.95'])} | {_pct(m['avg'])} |",
            "",
            "Acc@τ sweep (IoU ≥ τ, inclusive):",
            "",
            "| τ | " + " | ".join(f"{t:g}" for t in M.IOU_SWEEP) + " |",
            "|---|" + "---|" * len(M.IOU_SWEEP),
            "| Acc | " + " | ".join(_pct(m[f"acc@{t:g}"]) for t in M.IOU_SWEEP) + " |",
            "",
            f"Mean IoU: {_pct(m['mean_iou'])}.",
        ]
    elif task == "counting":
        mae = "–" if m["mae"] is None else f"{m['mae']:.2f}"
        lines += [
            f"| Model | {split or 'accuracy'} |",
            "|---|---|",
            f"| {model} | {_pct(m['accuracy'])} |",
            "",
            f"Exact-match accuracy (%). MAE over parsed samples: {mae}.",
        ]
    elif task == "ocr":
        lines += [
            "| Model | Edit dist ↓ | F1 ↑ | Precision ↑ | Recall ↑ | BLEU ↑ | METEOR ↑ |",
            "|---|---|---|---|---|---|---|",
            f"| {model} | "
            + " | ".join(_pct(m[k]) for k in ("edit_distance", "f1", "precision", "recall", "bleu", "meteor"))
            + " |",
        ]
    else:
        lines += [
            "| Model | AP | AP50 | AP75 | APs | APm | APl |",
            "|---|---|---|---|---|---|---|",
            f"| {model} | " + " | ".join(_pct(m[k]) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")) + " |",
            "",
            "| AR@1 | AR@10 | AR@100 | ARs | ARm | ARl |",
            "|---|---|---|---|---|---|",
            "| " + " | ".join(_pct(m[k]) for k in ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl")) + " |",
        ]
    failure_rate = m.get("parse_failure_rate")
    lines += [
        "",
        f"Samples: {summary['num_samples']}. Parse failures: {_pct(failure_rate)}%"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in sorted(summary['failures'].items()))})"
            if summary["failures"]
            else ""
        )
        + ". Backend: "
        + str(run.get("backend", "?"))
        + ", greedy decoding.",
    ]
    for note in summary.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"

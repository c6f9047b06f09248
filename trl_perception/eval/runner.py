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

import dataclasses
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
from trl_perception.eval.scoring import COUNT_MODES
from trl_perception.eval.tasks import EvalContext, check_record, detection_results, generic_table, get_eval_task, pct
from trl_perception.families import get_family, resolve_family
from trl_perception.geometry import ImageGeometry, get_frame


logger = logging.getLogger("trl_perception.eval")

__all__ = ["EvalConfig", "EvalResult", "detection_results", "evaluate", "resolve_frame", "results_markdown"]


@dataclass
class EvalConfig:
    """Options of one evaluation run.

    Args:
        task: a registered evaluation task (`trl_perception.eval.tasks`): ``"grounding"``, ``"counting"``, ``"ocr"``,
            ``"detection"`` or one registered with `register_eval_task`.
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
        get_eval_task(self.task)  # raises, listing the registered tasks
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


def evaluate(dataset, config: EvalConfig, backend) -> EvalResult:
    """Generate with ``backend`` over ``dataset`` (shared schema), score every sample, write the run directory.

    ``dataset`` is a `datasets.Dataset` with the shared columns (``prompt``, ``image``, ``width``, ``height`` and the
    task's GT). ``backend`` is anything with ``generate(prompts, images) -> list[Generation]`` (see `backends`).
    """
    from tqdm.auto import tqdm

    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = _select_rows(dataset, config.task, config.limit)
    task = get_eval_task(config.task)
    context = EvalContext(config, state=task.prepare(rows, config) if task.prepare is not None else None)

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
                record = _score(task, context, row, images[i], generations[i])
                records.append(record)
                f.write(json.dumps(strict_json(record), ensure_ascii=False, allow_nan=False) + "\n")
            bar.update(n)
        bar.close()
    elapsed = time.perf_counter() - started

    metrics = dict(task.metric(records, context))
    if "parse_failure_rate" not in metrics:
        metrics["parse_failure_rate"] = _failure_rate(records)
    metrics.setdefault("num_samples", len(records))
    summary = {
        "task": config.task,
        "num_samples": len(records),
        "metrics": {k: M.finite_or_none(v) for k, v in metrics.items()},
        "failures": dict(Counter(r["failure"] for r in records if r["failure"] is not None)),
        "generation": (generation := _generation_stats(records, elapsed)),
        "notes": _notes(task, context, metrics, generation),
        "config": {k: v for k, v in asdict(config).items() if k not in ("coco_gt", "run_info", "progress")},
        "run": config.run_info,
        **context.extra,
    }
    with open(out_dir / "metrics.json", "w", encoding="utf-8") as f:
        json.dump(strict_json(summary), f, indent=2, ensure_ascii=False, allow_nan=False)
    (out_dir / "results.md").write_text(results_markdown(summary), encoding="utf-8")
    if config.num_visualizations > 0 and records:
        from trl_perception.eval.visualize import save_visualizations

        save_visualizations(task, rows, records, out_dir / "visualizations", config.num_visualizations)
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


def _score(task, context: EvalContext, row: dict, image, generation) -> dict[str, Any]:
    width, height = int(row["width"]), int(row["height"])
    if image.size != (width, height):
        raise ValueError(
            f"Row {row.get('id')!r}: image is {image.size[0]}x{image.size[1]} but width/height say {width}x{height}; "
            "ground truth must be in the pixels of the image the model sees."
        )
    sample = dataclasses.replace(context, geometry=ImageGeometry(width, height, *generation.model_image_size))
    scored = check_record(task.name, row, task.score_sample(generation.text, row, sample))
    record = {"id": row.get("id"), "completion": generation.text, "parsed": None, **scored}
    record.update(
        num_prompt_tokens=generation.num_prompt_tokens,
        num_completion_tokens=generation.num_completion_tokens,
        finish_reason=generation.finish_reason,
        model_image_size=list(generation.model_image_size),
    )
    return record


def _failure_rate(records) -> float:
    return sum(r["failure"] is not None for r in records) / len(records) if records else float("nan")


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


def _notes(task, context: EvalContext, metrics: dict[str, Any], generation: dict[str, Any]) -> list[str]:
    notes = []
    truncated = generation.get("truncated_rate") or 0.0
    if truncated > 0:
        # A cut-off answer is usually a parse failure or a partial box list: the metric then measures the budget.
        notes.append(
            f"Warning: {100 * truncated:.1f}% of the completions stopped at the generation budget (finish_reason "
            "'length') and were scored as cut off; raise --max_new_tokens."
        )
    if task.notes is not None:
        notes += task.notes(context, metrics)
    return notes


# ---------------------------------------------------------------------------------------------------------------------
# Markdown tables laid out like the paper's
# ---------------------------------------------------------------------------------------------------------------------


def results_markdown(summary: dict[str, Any]) -> str:
    """The run's metrics as markdown tables with the paper's columns (values × 100, one decimal)."""
    task, m, run = summary["task"], summary["metrics"], summary.get("run", {})
    model = run.get("model_name") or os.path.basename(str(run.get("model", "model")).rstrip("/")) or "model"
    dataset = run.get("dataset", "dataset")
    split = run.get("split")
    title = f"{dataset}" + (f" / {split}" if split else "")
    lines = [f"# {task} evaluation: {title}", ""]
    try:
        table = get_eval_task(task).table or generic_table
    except ValueError:  # a run directory of a task that is not registered in this process
        table = generic_table
    lines += table(m, model, split)
    failure_rate = m.get("parse_failure_rate")
    lines += [
        "",
        f"Samples: {summary['num_samples']}. Parse failures: {pct(failure_rate)}%"
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

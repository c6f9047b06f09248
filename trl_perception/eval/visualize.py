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
"""Pictures for a run directory: predicted vs ground-truth boxes on a few images, and a counting confusion plot.

Boxes are drawn in original pixels (the frame the metrics use): ground truth in green, predictions in red, labels in
white on a box of their colour. Captions spell out what happened: "parsed" / "not parsed (reason)" says whether the
answer could be read, "correct" / "wrong" whether it scored (grounding: IoU ≥ 0.5; counting: exact count), and the
grounding caption quotes the referring expression. Small images are upscaled so boxes stay readable. Matplotlib runs on the ``Agg``
backend (no display needed).

Example:

```python
paths = save_visualizations("grounding", dataset, records, "runs/x/visualizations", num_samples=8)
picture = draw_boxes(image, gt_boxes=[[4, 4, 20, 20]], pred_points=[[12, 12]], caption=["id", "parsed: correct"])
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont


GT_COLOR = (0, 170, 0)
PRED_COLOR = (220, 30, 30)
MIN_SIDE = 320


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (FreeType)
    except (TypeError, OSError):  # an old Pillow or one without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_on_background(draw: ImageDraw.ImageDraw, xy, text: str, color, font, bounds) -> None:
    """``text`` in white on a filled ``color`` rectangle at ``xy`` (moved inside ``bounds`` = (width, height))."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 6, bottom - top + 4
    x = min(max(0, xy[0]), max(0, bounds[0] - w))
    y = min(max(0, xy[1]), max(0, bounds[1] - h))
    draw.rectangle([x, y, x + w, y + h], fill=color)
    draw.text((x + 3 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)


def _fit(text: str, font, max_width: int) -> str:
    """``text`` cut (binary search on its rendered length) so that it fits ``max_width`` px."""
    if font.getlength(text) <= max_width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid] + "…") <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def draw_boxes(
    image: Image.Image,
    gt_boxes: Sequence[Sequence[float]] = (),
    pred_boxes: Sequence[Sequence[float]] = (),
    gt_labels: Sequence[str | None] = (),
    pred_labels: Sequence[str | None] = (),
    gt_points: Sequence[Sequence[float]] = (),
    caption: str | Sequence[str] | None = None,
    pred_points: Sequence[Sequence[float]] = (),
    max_side: int | None = None,
) -> Image.Image:
    """Return a copy of ``image`` with GT (green) and predicted (red) ``xyxy`` boxes and points drawn on it.

    Coordinates are original pixels of ``image``; the copy is upscaled to at least `MIN_SIDE` px on its short side
    and, with ``max_side``, downscaled so that its long side is at most ``max_side`` px. Box labels are written in
    white on a box of the box's colour, so they stay readable on filled regions. ``caption`` (a string, whose
    ``"\\n"`` start new lines, or a list of lines) goes in a white band under the image. Without ``max_side`` the band
    is as wide as the longest line; with it, lines are cut to the picture's width.

    >>> out = draw_boxes(Image.new("RGB", (64, 32)), gt_boxes=[[4, 4, 20, 20]], pred_boxes=[[6, 6, 22, 22]])
    >>> out.size
    (640, 320)
    >>> draw_boxes(Image.new("RGB", (2000, 1000)), caption="a\\nb", max_side=500).size
    (500, 298)
    """
    scale = max(1.0, MIN_SIDE / min(image.size))
    if max_side is not None:
        scale = min(scale, max_side / max(image.size))
    width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    raw = caption.split("\n") if isinstance(caption, str) else list(caption or [])
    font = _font(14)
    line_height = 20
    lines = [text[:160] for text in raw]
    if max_side is not None:  # a fixed-size panel: cut each line to the width instead of widening the band
        lines = [_fit(text, font, width - 12) for text in lines]
    caption_height = 8 + line_height * len(lines) if lines else 0
    # The caption band is as wide as its longest line: a narrow image does not cut the caption off.
    canvas_width = max([width, *(round(font.getlength(text)) + 12 for text in lines)])
    canvas = Image.new("RGB", (canvas_width, height + caption_height), (255, 255, 255))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    canvas.paste(image.convert("RGB").resize((width, height), resample), (0, 0))
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(scale))

    def box(b, color, label):
        x1, y1, x2, y2 = (float(v) * scale for v in b)
        if not all(math.isfinite(v) and abs(v) < 1e7 for v in (x1, y1, x2, y2)):  # skip NaN / absurd boxes
            return
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=color, width=line)
        if label:
            _text_on_background(draw, (min(x1, x2), min(y1, y2)), str(label)[:40], color, font, (width, height))

    def point(p, color):
        x, y = (float(v) * scale for v in p[:2])
        if math.isfinite(x) and math.isfinite(y) and abs(x) < 1e7 and abs(y) < 1e7:
            r = 2 * line
            draw.ellipse([x - r, y - r, x + r, y + r], outline=color, width=line)

    for i, b in enumerate(gt_boxes):
        box(b, GT_COLOR, gt_labels[i] if i < len(gt_labels) else None)
    for i, b in enumerate(pred_boxes):
        box(b, PRED_COLOR, pred_labels[i] if i < len(pred_labels) else None)
    for p in gt_points:
        point(p, GT_COLOR)
    for p in pred_points:
        point(p, PRED_COLOR)
    for i, text in enumerate(lines):
        draw.text((6, height + 4 + i * line_height), text, fill=(0, 0, 0), font=font)
    return canvas


def tile_pictures(
    pictures: Sequence[Image.Image], columns: int = 4, gap: int = 4, title: str | None = None
) -> Image.Image:
    """Pictures side by side, ``columns`` per row (top-aligned, white background), under an optional one-line title.

    >>> tile_pictures([Image.new("RGB", (10, 20)), Image.new("RGB", (30, 10)), Image.new("RGB", (5, 5))], columns=2).size
    (44, 29)
    """
    if not pictures:
        raise ValueError("tile_pictures needs at least one picture.")
    columns = max(1, min(columns, len(pictures)))
    rows = [pictures[i : i + columns] for i in range(0, len(pictures), columns)]
    col_widths = [max(row[c].width for row in rows if c < len(row)) for c in range(columns)]
    row_heights = [max(p.height for p in row) for row in rows]
    title_height = 22 if title else 0
    width = sum(col_widths) + gap * (columns - 1)
    canvas = Image.new("RGB", (width, title_height + sum(row_heights) + gap * (len(rows) - 1)), (255, 255, 255))
    if title:
        ImageDraw.Draw(canvas).text((6, 5), title[: max(120, width // 6)], fill=(0, 0, 0))
    y = title_height
    for row, row_height in zip(rows, row_heights):
        x = 0
        for c, picture in enumerate(row):
            canvas.paste(picture, (x, y))
            x += col_widths[c] + gap
        y += row_height + gap
    return canvas


def parse_status(record: dict[str, Any]) -> str:
    """``"parsed"``, or ``"not parsed (<reason>)"``: whether the answer could be read at all."""
    return "parsed" if record.get("failure") is None else f"not parsed ({record['failure']})"


def grounding_caption(row: dict[str, Any], record: dict[str, Any], threshold: float = 0.5) -> list[str]:
    """Caption lines of a grounding picture: the id and the referring expression, then parse status, IoU, and
    correct / wrong at IoU ≥ ``threshold``.

    >>> grounding_caption({"labels": ["the red circle"]}, {"id": "r/1", "failure": None, "score": 0.8})
    ['r/1: "the red circle"', 'parsed, IoU 0.800: correct (IoU >= 0.5); GT green, prediction red']
    """
    labels = row.get("labels") or []
    expression = labels[0] if labels else None
    head = f"{record.get('id')}" + (f': "{expression}"' if expression else "")
    score = float(record.get("score") or 0.0)
    verdict = "correct" if record.get("failure") is None and score >= threshold else "wrong"
    return [
        head,
        f"{parse_status(record)}, IoU {score:.3f}: {verdict} (IoU >= {threshold:g}); GT green, prediction red",
    ]


def counting_caption(record: dict[str, Any]) -> list[str]:
    """Caption lines of a counting picture: GT and predicted count, parse status, correct / wrong.

    >>> counting_caption({"id": "c/1", "failure": "no_count", "prediction": None, "gt": 3})
    ['c/1: GT count 3, predicted -', 'not parsed (no_count): wrong; GT boxes/points green']
    """
    predicted = "-" if record.get("prediction") is None else record["prediction"]
    verdict = "correct" if record.get("failure") is None and record.get("prediction") == record.get("gt") else "wrong"
    return [
        f"{record.get('id')}: GT count {record.get('gt')}, predicted {predicted}",
        f"{parse_status(record)}: {verdict}; GT boxes/points green",
    ]


def detection_caption(record: dict[str, Any]) -> list[str]:
    """Caption lines of a detection picture: counts of boxes, parse status, recall@0.5.

    >>> detection_caption({"id": "d/1", "failure": None, "prediction": [{}], "gt": {"boxes": [[0, 0, 1, 1]] * 2},
    ...                    "score": 0.5})
    ['d/1: 2 GT boxes (green), 1 predicted (red)', 'parsed, recall@0.5 0.500 (GT boxes found by a same-class box)']
    """
    n_gt = len((record.get("gt") or {}).get("boxes") or [])
    n_pred = len(record.get("prediction") or [])
    score = float(record.get("score") or 0.0)
    return [
        f"{record.get('id')}: {n_gt} GT boxes (green), {n_pred} predicted (red)",
        f"{parse_status(record)}, recall@0.5 {score:.3f} (GT boxes found by a same-class box)",
    ]


def draw_grounding(image: Image.Image, row: dict[str, Any], record: dict[str, Any]) -> Image.Image:
    """The built-in grounding picture: GT box, first predicted box, the expression and the verdict."""
    pred = [record["prediction"]] if record["prediction"] is not None else []
    return draw_boxes(image, [record["gt"]], pred, caption=grounding_caption(row, record))


def draw_counting(image: Image.Image, row: dict[str, Any], record: dict[str, Any]) -> Image.Image:
    """The built-in counting picture: GT boxes and points, GT vs predicted count."""
    return draw_boxes(
        image, row.get("boxes") or [], gt_points=row.get("points") or [], caption=counting_caption(record)
    )


def draw_detection(image: Image.Image, row: dict[str, Any], record: dict[str, Any]) -> Image.Image:
    """The built-in detection picture: GT and kept predicted boxes with their labels."""
    dets = record["prediction"]
    return draw_boxes(
        image,
        record["gt"]["boxes"],
        [d["bbox"] for d in dets],
        gt_labels=row.get("labels") or [],
        pred_labels=[d["label"] for d in dets],
        caption=detection_caption(record),
    )


def save_visualizations(
    task: Any, dataset, records: Sequence[dict[str, Any]], out_dir: str | Path, num_samples: int = 8
) -> list[Path]:
    """Draw the first ``num_samples`` samples with the task's ``draw`` and run its ``plot`` (counting: the confusion
    plot); return the files. ``task`` is a registered task's name or its `trl_perception.eval.tasks.EvalTask`."""
    from trl_perception.eval.tasks import get_eval_task

    task = get_eval_task(task) if isinstance(task, str) else task
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if task.draw is not None:
        for i in range(min(num_samples, len(records))):
            row = dataset[i]
            image = row["image"]
            picture = task.draw(image if image.mode == "RGB" else image.convert("RGB"), row, records[i])
            if picture is not None:
                path = out_dir / f"sample_{i:03d}.png"
                picture.save(path)
                written.append(path)
    if task.plot is not None:
        written += list(task.plot(list(records), out_dir))
    return written


def counting_confusion_plot(
    pred_counts: Sequence[int | None], gt_counts: Sequence[int], path: str | Path, max_count: int = 30
) -> Path:
    """Save a GT-count × predicted-count heat map; parse failures get their own "fail" row.

    Counts above ``max_count`` are pooled into a ``>max_count`` bin so one runaway prediction does not blow up the
    axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def bin_of(c):
        return min(int(c), max_count + 1)

    gt_bins = [bin_of(g) for g in gt_counts]
    pred_bins = [None if p is None else bin_of(p) for p in pred_counts]
    top = max([*gt_bins, *(p for p in pred_bins if p is not None), 1])
    labels = [str(i) if i <= max_count else f">{max_count}" for i in range(top + 1)]
    matrix = np.zeros((top + 2, top + 1), dtype=int)  # rows: predicted count (+ fail row), columns: GT count
    for g, p in zip(gt_bins, pred_bins):
        matrix[top + 1 if p is None else p, g] += 1
    accuracy = np.mean([p == g for p, g in zip(pred_counts, gt_counts)]) if gt_counts else float("nan")

    size = min(12, 3 + 0.4 * top)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(matrix, origin="lower", cmap="Blues", aspect="auto")
    ax.set_xticks(range(top + 1), labels)
    ax.set_yticks(range(top + 2), [*labels, "fail"])
    ax.set_xlabel("ground-truth count")
    ax.set_ylabel("predicted count")
    ax.set_title(f"Counting: exact-match accuracy {100 * accuracy:.1f}% (n={len(gt_counts)})")
    for (y, x), value in np.ndenumerate(matrix):
        if value:
            color = "white" if value > matrix.max() / 2 else "black"  # readable on dark cells
            ax.text(x, y, str(value), ha="center", va="center", color=color, fontsize=8)
    ax.plot([-0.5, top + 0.5], [-0.5, top + 0.5], color="gray", linewidth=0.8, linestyle="--")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

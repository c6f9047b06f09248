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

Boxes are drawn in original pixels (the frame the metrics use): ground truth in green, predictions in red, with the
sample's score in the caption. Small images are upscaled so boxes stay readable. Matplotlib runs on the ``Agg``
backend (no display needed).

Example:

```python
paths = save_visualizations("grounding", dataset, records, "runs/x/visualizations", num_samples=8)
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw


GT_COLOR = (0, 170, 0)
PRED_COLOR = (220, 30, 30)
MIN_SIDE = 320


def draw_boxes(
    image: Image.Image,
    gt_boxes: Sequence[Sequence[float]] = (),
    pred_boxes: Sequence[Sequence[float]] = (),
    gt_labels: Sequence[str | None] = (),
    pred_labels: Sequence[str | None] = (),
    gt_points: Sequence[Sequence[float]] = (),
    caption: str | None = None,
    pred_points: Sequence[Sequence[float]] = (),
    max_side: int | None = None,
) -> Image.Image:
    """Return a copy of ``image`` with GT (green) and predicted (red) ``xyxy`` boxes and points drawn on it.

    Coordinates are original pixels of ``image``; the copy is upscaled to at least `MIN_SIDE` px on its short side
    and, with ``max_side``, downscaled so that its long side is at most ``max_side`` px. A ``caption`` may hold several
    lines (``"\\n"``); each line is cut to the picture's width.

    >>> out = draw_boxes(Image.new("RGB", (64, 32)), gt_boxes=[[4, 4, 20, 20]], pred_boxes=[[6, 6, 22, 22]])
    >>> out.size
    (640, 320)
    >>> draw_boxes(Image.new("RGB", (2000, 1000)), caption="a\\nb", max_side=500).size
    (500, 286)
    """
    scale = max(1.0, MIN_SIDE / min(image.size))
    if max_side is not None:
        scale = min(scale, max_side / max(image.size))
    width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    lines = caption.split("\n") if caption else []
    caption_height = max(32, 14 * len(lines) + 8) if lines else 0
    canvas = Image.new("RGB", (width, height + caption_height), (255, 255, 255))
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
            draw.text((min(x1, x2) + 3, min(y1, y2) + 2), str(label)[:40], fill=color)

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
    chars = max(120, width // 6)  # the default font is about 6 px per character
    for i, text in enumerate(lines):
        draw.text((6, height + 8 + 14 * i), text[:chars], fill=(0, 0, 0))
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


def _sample_picture(task: str, row: dict[str, Any], record: dict[str, Any]) -> Image.Image | None:
    image = row["image"]
    score = record.get("score")
    status = record["failure"] or f"score {score:.3f}"
    if task == "grounding":
        pred = [record["prediction"]] if record["prediction"] is not None else []
        return draw_boxes(image, [record["gt"]], pred, caption=f"{record['id']}  IoU/{status}  (GT green, pred red)")
    if task == "detection":
        dets = record["prediction"]
        return draw_boxes(
            image,
            record["gt"]["boxes"],
            [d["bbox"] for d in dets],
            gt_labels=row.get("labels") or [],
            pred_labels=[d["label"] for d in dets],
            caption=f"{record['id']}  {len(dets)} detections, recall@0.5 {status}",
        )
    if task == "counting":
        caption = f"{record['id']}  GT {record['gt']}, predicted {record['prediction']} ({record['failure'] or 'ok'})"
        return draw_boxes(image, row.get("boxes") or [], gt_points=row.get("points") or [], caption=caption)
    return None


def save_visualizations(
    task: str, dataset, records: Sequence[dict[str, Any]], out_dir: str | Path, num_samples: int = 8
) -> list[Path]:
    """Draw the first ``num_samples`` samples (boxes tasks) and, for counting, the confusion plot; return the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if task in ("grounding", "detection", "counting"):
        for i in range(min(num_samples, len(records))):
            picture = _sample_picture(task, dataset[i], records[i])
            if picture is not None:
                path = out_dir / f"sample_{i:03d}.png"
                picture.save(path)
                written.append(path)
    if task == "counting":
        path = out_dir / "counting_confusion.png"
        counting_confusion_plot([r["prediction"] for r in records], [r["gt"] for r in records], path)
        written.append(path)
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

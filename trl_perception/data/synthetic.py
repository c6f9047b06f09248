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
"""Synthetic perception data: coloured shapes drawn on canvases, with exact ground truth.

Each example is generated from its own seeded random stream (`seed`, split, index), so a split is reproducible
example by example, independent of how many examples are requested. Ground truth follows the shared schema
(`trl_perception.data.schema`): boxes in original pixels (`[x1, y1, x2, y2]`, continuous convention: a square
drawn on pixels 10..19 has the box `[10, 10, 20, 20]`), points at shape centres, the object count, and the image
size.

Tasks:

- `counting`: `min_objects..max_objects` shapes; GT `count`, `points` (centres), `boxes` and `labels`.
- `grounding`: one target shape whose colour+shape is unique in the image, plus distractors; the referring
  expression (e.g. "red circle") fills the prompt, GT `boxes` holds the target's box.

With `cell_size` set, shapes fill cells of a grid (one shape per cell, aligned to the vision patches); otherwise
they are placed anywhere without overlap.

Example:

```python
>>> from trl_perception.data import load_synthetic_shapes
>>> ds = load_synthetic_shapes(task="counting", num_train=64, num_test=16)
>>> ds["train"][0]["count"]
```
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field

import datasets
import numpy as np
from PIL import Image, ImageDraw

from .schema import empty_row, perception_features


COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 45),
    "green": (40, 180, 75),
    "blue": (0, 90, 220),
    "yellow": (250, 210, 20),
    "purple": (150, 40, 190),
    "orange": (245, 130, 40),
    "black": (0, 0, 0),
}
SHAPES = ("square", "circle", "triangle")

DEFAULT_COUNTING_PROMPT = "How many shapes are in the image? Answer with a single number."
DEFAULT_GROUNDING_PROMPT = "Output the bounding box of the {expression} in the image."


@dataclass
class SyntheticShapesConfig(datasets.BuilderConfig):
    """Options of [`SyntheticShapes`].

    Args:
        task (`str`): `"counting"` or `"grounding"`.
        num_train, num_test (`int`): examples per split.
        canvas_width, canvas_height (`int`): image size in pixels.
        min_objects, max_objects (`int`): number of shapes per image (grounding: target included).
        cell_size (`int` or `None`): grid cell size; `None` places shapes freely.
        min_size, max_size (`int`): shape size range in pixels when `cell_size` is `None`.
        seed (`int`): base seed; each example is drawn from `(seed, split, index)`.
        prompt (`str` or `None`): user prompt; `{expression}` is filled for grounding. Defaults per task.
        system_prompt (`str` or `None`): optional system message.
        colors (`tuple[str, ...]` or `None`): colour names to draw from (default: all but black).
        shapes (`tuple[str, ...]` or `None`): shape kinds to draw from (default: square, circle, triangle).
        background (`tuple[int, int, int]`): canvas colour.
    """

    task: str = "counting"
    num_train: int = 1000
    num_test: int = 200
    canvas_width: int = 112
    canvas_height: int = 112
    min_objects: int = 1
    max_objects: int = 4
    cell_size: int | None = 28
    min_size: int = 12
    max_size: int = 28
    seed: int = 0
    prompt: str | None = None
    system_prompt: str | None = None
    colors: tuple[str, ...] | None = None
    shapes: tuple[str, ...] | None = None
    background: tuple[int, int, int] = field(default=(255, 255, 255))

    def __post_init__(self):
        super().__post_init__()
        if self.task not in ("counting", "grounding"):
            raise ValueError(f"task must be 'counting' or 'grounding', got {self.task!r}.")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"Need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}.")
        if self.task == "grounding" and self.min_objects < 1:
            raise ValueError("Grounding needs at least the target object.")
        if self.cell_size is not None:
            cells = (self.canvas_width // self.cell_size) * (self.canvas_height // self.cell_size)
            if cells < self.max_objects:
                raise ValueError(
                    f"A {self.canvas_width}x{self.canvas_height} canvas has only {cells} cells of {self.cell_size} px,"
                    f" fewer than max_objects={self.max_objects}. Lower max_objects or cell_size."
                )
        elif self.max_size > min(self.canvas_width, self.canvas_height):
            raise ValueError("max_size must fit in the canvas.")
        self.colors = tuple(self.colors) if self.colors else tuple(c for c in COLORS if c != "black")
        self.shapes = tuple(self.shapes) if self.shapes else SHAPES
        unknown = [c for c in self.colors if c not in COLORS] + [s for s in self.shapes if s not in SHAPES]
        if unknown:
            raise ValueError(f"Unknown colours/shapes {unknown}; colours: {list(COLORS)}, shapes: {list(SHAPES)}.")
        if self.task == "grounding" and len(self.colors) * len(self.shapes) < self.max_objects:
            raise ValueError("Grounding needs at least max_objects distinct colour+shape kinds.")
        if min(self.canvas_width, self.canvas_height) < 28:
            raise ValueError("Qwen-VL processors need images of at least 28 px per side.")


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], color) -> None:
    # `box` is continuous [x1, y1, x2, y2]; PIL's coordinates are inclusive, hence the -1.
    x1, y1, x2, y2 = box
    xy = (x1, y1, x2 - 1, y2 - 1)
    if shape == "square":
        draw.rectangle(xy, fill=color)
    elif shape == "circle":
        draw.ellipse(xy, fill=color)
    else:
        draw.polygon([(x1, y2 - 1), ((x1 + x2 - 1) / 2, y1), (x2 - 1, y2 - 1)], fill=color)


def _example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{split}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _place_boxes(rng: np.random.Generator, config: SyntheticShapesConfig, n: int) -> list[tuple[int, int, int, int]]:
    W, H = config.canvas_width, config.canvas_height
    if config.cell_size is not None:
        c = config.cell_size
        cols, rows = W // c, H // c
        cells = rng.choice(cols * rows, size=n, replace=False)
        margin = max(1, c // 8)
        return [
            (
                (k % cols) * c + margin,
                (k // cols) * c + margin,
                (k % cols + 1) * c - margin,
                (k // cols + 1) * c - margin,
            )
            for k in cells
        ]
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(1000 * n):
        if len(boxes) == n:
            break
        s = int(rng.integers(config.min_size, config.max_size + 1))
        x1, y1 = int(rng.integers(0, W - s + 1)), int(rng.integers(0, H - s + 1))
        cand = (x1, y1, x1 + s, y1 + s)
        if all(cand[2] <= b[0] or b[2] <= cand[0] or cand[3] <= b[1] or b[3] <= cand[1] for b in boxes):
            boxes.append(cand)
    if len(boxes) < n:
        raise ValueError(f"Could not place {n} non-overlapping shapes; use a larger canvas or smaller shapes.")
    return boxes


def make_example(config: SyntheticShapesConfig, split: str, index: int) -> dict:
    """Draw one example (a schema row with the image as PNG bytes)."""
    rng = _example_rng(config.seed, split, index)
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    boxes = _place_boxes(rng, config, n)
    colors, shapes = config.colors, config.shapes

    def draw_kind() -> tuple[str, str]:
        return colors[int(rng.integers(len(colors)))], shapes[int(rng.integers(len(shapes)))]

    kinds = [draw_kind() for _ in range(n)]
    if config.task == "grounding":
        # The target (index 0) must be the only shape of its colour+kind, so the expression is unambiguous.
        for i in range(1, n):
            while kinds[i] == kinds[0]:
                kinds[i] = draw_kind()
    image = Image.new("RGB", (config.canvas_width, config.canvas_height), tuple(config.background))
    draw = ImageDraw.Draw(image)
    for (color, shape), box in zip(kinds, boxes, strict=True):
        _draw_shape(draw, shape, box, COLORS[color])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")

    labels = [f"{color} {shape}" for color, shape in kinds]
    if config.task == "counting":
        user = config.prompt or DEFAULT_COUNTING_PROMPT
        gt = {
            "boxes": [list(map(float, b)) for b in boxes],
            "labels": labels,
            "count": n,
            "points": [[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes],
        }
    else:
        user = (config.prompt or DEFAULT_GROUNDING_PROMPT).format(expression=labels[0], question=labels[0])
        gt = {"boxes": [list(map(float, boxes[0]))], "labels": [labels[0]]}
    prompt = ([{"role": "system", "content": config.system_prompt}] if config.system_prompt else []) + [
        {"role": "user", "content": user}
    ]
    return empty_row(
        id=f"synthetic-{config.task}/{split}/{index}",
        task=config.task,
        prompt=prompt,
        image={"bytes": buffer.getvalue(), "path": None},
        width=config.canvas_width,
        height=config.canvas_height,
        **gt,
    )


class SyntheticShapes(datasets.GeneratorBasedBuilder):
    """Seeded shapes-on-canvas counting and grounding data with exact ground truth (see module docstring)."""

    BUILDER_CONFIG_CLASS = SyntheticShapesConfig
    BUILDER_CONFIGS = [
        SyntheticShapesConfig(name="counting", task="counting"),
        SyntheticShapesConfig(name="grounding", task="grounding", min_objects=1, max_objects=3),
    ]
    DEFAULT_CONFIG_NAME = "counting"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Synthetic coloured shapes with exact boxes, points and counts (trl-perception).",
            features=perception_features(),
        )

    def _split_generators(self, dl_manager):
        return [
            datasets.SplitGenerator(
                name=datasets.Split.TRAIN, gen_kwargs={"split": "train", "n": self.config.num_train}
            ),
            datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"split": "test", "n": self.config.num_test}),
        ]

    def _generate_examples(self, split: str, n: int):
        for index in range(n):
            yield index, make_example(self.config, split, index)


def load_synthetic_shapes(
    task: str = "counting", cache_dir: str | os.PathLike | None = None, **config_kwargs
) -> datasets.DatasetDict:
    """Build (or load from the Arrow cache) the synthetic shapes dataset; `config_kwargs` are
    [`SyntheticShapesConfig`] fields. Returns a `DatasetDict` with `train` and `test` splits."""
    builder = SyntheticShapes(
        config_name=task, cache_dir=None if cache_dir is None else str(cache_dir), **config_kwargs
    )
    builder.download_and_prepare()
    return builder.as_dataset()

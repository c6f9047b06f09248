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
"""Box geometry: formats, coordinate frames, `smart_resize`, pairwise IoU / GIoU and a box sanitizer.

Box convention (the same as `torchvision.ops.boxes`): a box is a row of 4 floats, by default ``xyxy`` =
``[x1, y1, x2, y2]`` with ``x1 <= x2`` and ``y1 <= y2``, in **continuous** coordinates (a box covering pixels 0..9
is ``[0, 0, 10, 10]``, area 100; no "+1"). Arrays of boxes have shape ``(..., 4)``; points have shape ``(..., 2)``.

Coordinate frames (all are axis-aligned scalings of the source image, so conversions are exact and invertible):

| frame | meaning | extent `(X, Y)` | written by |
|---|---|---|---|
| ``"original"`` | pixels of the source image | ``(W, H)`` | datasets, COCO results |
| ``"normalized"`` | ``original / (W, H)`` | ``(1, 1)`` | |
| ``"grid_1000"`` | ``original / (W, H) * 1000``, a relative 0–1000 grid | ``(1000, 1000)`` | Qwen2-VL, Qwen3-VL, Qwen3.5, InternVL |
| ``"resized"`` | pixels of the smart-resized model input, ``original * (W_r / W, H_r / H)`` | ``(W_r, H_r)`` | Qwen2.5-VL |

Frames form a registry ([`register_frame`], [`get_frame`]); a model family's name (see
[`trl_perception.families`]) is accepted wherever a frame is and means that family's box frame, so
``convert_boxes(b, "original", "qwen2_5_vl", g)`` is ``convert_boxes(b, "original", "resized", g)``.

A value ``v`` in frame ``a`` becomes ``v / extent_a * extent_b`` in frame ``b``. Conversions keep floats: rounding
and clamping (as Qwen's own target rendering does) belong to text rendering, not to rewards or metrics.

Degenerate input has a defined result everywhere (no exception, no NaN):

- [`box_iou`] / [`generalized_box_iou`]: a box with a NaN coordinate or an inverted side (``x2 < x1``) has zero area;
  IoU is 0 whenever the union is not a positive finite number (zero-area vs zero-area, overflow); results are clipped
  to ``[0, 1]`` (IoU) and ``[-1, 1]`` (GIoU).
- [`sanitize_boxes`] is the one place that decides what to *do* with bad boxes before scoring: non-finite boxes are
  rejected, inverted boxes are rejected (or swapped), out-of-image boxes are clipped to the frame (or rejected).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np


BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
# A registered frame name (see `list_frames()`), or a model family name meaning that family's box frame.
Frame = str

BOX_FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh")

# Qwen2-VL / Qwen2.5-VL checkpoints' `preprocessor_config.json`: patch_size 14 x merge_size 2, min 4 and max 16384
# visual tokens of 28x28 pixels: `smart_resize`'s and `ImageGeometry.from_size`'s defaults. Per-family values live in
# `trl_perception.families`.
QWEN_FACTOR = 28
QWEN_MIN_PIXELS = 3136
QWEN_MAX_PIXELS = 12845056
GRID_1000 = 1000.0

# Degenerate input (inf - inf, overflow to inf) is handled explicitly below; numpy's warnings would only be noise.
_QUIET = {"invalid": "ignore", "over": "ignore", "divide": "ignore"}


# ----------------------------------------------------------------------------------------------------------------
# Array helpers: numpy in, numpy out; torch tensors in, torch tensors out (computed in numpy, float64).
# ----------------------------------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")  # never import torch just to check a type
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x: Any, last_dim: int) -> np.ndarray:
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, last_dim)
    if arr.shape[-1] != last_dim:
        raise ValueError(f"Expected an array whose last dimension is {last_dim}, got shape {arr.shape}.")
    return arr


def _like(result: np.ndarray, reference: Any) -> Any:
    """Return `result` as the same array type as `reference` (torch tensors keep their dtype and device)."""
    if _is_torch(reference):
        torch = sys.modules["torch"]
        dtype = reference.dtype if reference.is_floating_point() else torch.float32
        return torch.from_numpy(np.ascontiguousarray(result)).to(dtype=dtype, device=reference.device)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Box formats
# ----------------------------------------------------------------------------------------------------------------


def box_convert(boxes: Any, in_fmt: BoxFormat, out_fmt: BoxFormat) -> Any:
    """
    Convert boxes between ``xyxy``, ``xywh`` (COCO: top-left corner + size) and ``cxcywh`` (centre + size).

    Args:
        boxes (`array-like` or `torch.Tensor` of shape `(..., 4)`):
            Boxes in `in_fmt`.
        in_fmt (`str`):
            One of `"xyxy"`, `"xywh"`, `"cxcywh"`.
        out_fmt (`str`):
            One of `"xyxy"`, `"xywh"`, `"cxcywh"`.

    Returns:
        `np.ndarray` (or `torch.Tensor` if a tensor was given) of shape `(..., 4)`, float64 for numpy input.

    Example:

    ```python
    >>> box_convert([[10, 20, 30, 40]], "xywh", "xyxy").tolist()
    [[10.0, 20.0, 40.0, 60.0]]
    >>> box_convert([[10, 20, 40, 60]], "xyxy", "cxcywh").tolist()
    [[25.0, 40.0, 30.0, 40.0]]

    ```
    """
    for fmt in (in_fmt, out_fmt):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"Unknown box format {fmt!r}; expected one of {BOX_FORMATS}.")
    arr = _to_numpy(boxes, 4)
    if in_fmt == out_fmt:
        return _like(arr.copy(), boxes)
    a, b, c, d = arr[..., 0], arr[..., 1], arr[..., 2], arr[..., 3]
    if in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    else:
        x1, y1, x2, y2 = a, b, c, d
    if out_fmt == "xyxy":
        out = np.stack([x1, y1, x2, y2], axis=-1)
    elif out_fmt == "xywh":
        out = np.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)
    else:
        out = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)
    return _like(out, boxes)


def box_area(boxes: Any, plus_one: bool = False) -> Any:
    """
    Area of ``xyxy`` boxes; inverted or NaN sides count as 0.

    Example:

    ```python
    >>> box_area([[0, 0, 10, 5], [5, 5, 0, 0]]).tolist()
    [50.0, 0.0]

    ```
    """
    arr = _to_numpy(boxes, 4)
    with np.errstate(**_QUIET):
        return _like(_area(arr, 1.0 if plus_one else 0.0), boxes)


def _area(arr: np.ndarray, one: float) -> np.ndarray:
    # fmax (not maximum) maps NaN sides to 0, so a NaN box has zero area instead of poisoning the result.
    # Callers silence floating-point warnings (inf - inf, overflow) once, around the whole computation.
    w = np.fmax(arr[..., 2] - arr[..., 0] + one, 0.0)
    h = np.fmax(arr[..., 3] - arr[..., 1] + one, 0.0)
    return w * h


# ----------------------------------------------------------------------------------------------------------------
# smart_resize and image geometry
# ----------------------------------------------------------------------------------------------------------------


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 14 * 14 * 4 * 1280
) -> tuple[int, int]:
    """
    Size of the model input that Qwen2-VL / Qwen2.5-VL processors resize an image to; returns `(height, width)`.

    Identical to `transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize` (same defaults, same math with
    Python's banker's `round`, same errors: `ValueError` for an aspect ratio above 200, `ZeroDivisionError` for a zero
    side), so it is a drop-in replacement that does not import transformers. Checkpoints override the defaults:
    Qwen2-VL and Qwen2.5-VL Instruct use `min_pixels=3136`, `max_pixels=12845056` (see [`ImageGeometry.from_size`]).

    Args:
        height (`int`):
            Source image height in pixels.
        width (`int`):
            Source image width in pixels.
        factor (`int`, *optional*, defaults to `28`):
            Both output sides are multiples of this (patch size 14 x merge size 2).
        min_pixels (`int`, *optional*, defaults to `3136`):
            Lower bound on the output area.
        max_pixels (`int`, *optional*, defaults to `1003520`):
            Upper bound on the output area.

    Example:

    ```python
    >>> smart_resize(480, 640, min_pixels=3136, max_pixels=12845056)
    (476, 644)
    >>> smart_resize(2000, 3000, max_pixels=1_000_000)
    (812, 1204)

    ```
    """
    return _smart_resize(height, width, factor, min_pixels, max_pixels)


@lru_cache(maxsize=65536)
def _smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    # Keep this body line-for-line equivalent to transformers' (tests compare the two over thousands of sizes).
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True, slots=True)
class ImageGeometry:
    """
    Source size and model-input (smart-resized) size of one image: everything needed to move between frames.

    Args:
        width (`int`):
            Source image width `W` in pixels.
        height (`int`):
            Source image height `H` in pixels.
        resized_width (`int`):
            Model input width `W_r` (extent of the `"resized"` frame), e.g. `image_grid_thw[2] * patch_size`.
        resized_height (`int`):
            Model input height `H_r`.

    Example:

    ```python
    >>> g = ImageGeometry.from_size(640, 480)
    >>> (g.resized_width, g.resized_height)
    (644, 476)
    >>> g.extent("grid_1000")
    (1000.0, 1000.0)

    ```
    """

    width: int
    height: int
    resized_width: int
    resized_height: int

    def __post_init__(self):
        for name in ("width", "height", "resized_width", "resized_height"):
            value = getattr(self, name)
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            if not ok or not math.isfinite(value) or value != int(value) or not 1 <= value <= 1 << 24:
                raise ValueError(
                    f"ImageGeometry: {name}={value!r} is not an integer number of pixels in [1, {1 << 24}] "
                    f"(got {self.width!r}x{self.height!r}, resized {self.resized_width!r}x{self.resized_height!r})"
                )

    @classmethod
    def from_size(
        cls,
        width: int,
        height: int,
        min_pixels: int = QWEN_MIN_PIXELS,
        max_pixels: int = QWEN_MAX_PIXELS,
        factor: int = QWEN_FACTOR,
    ) -> ImageGeometry:
        """Geometry of a `width` x `height` image under [`smart_resize`] (defaults: the Qwen2.5-VL checkpoints')."""
        resized_height, resized_width = smart_resize(height, width, factor, min_pixels, max_pixels)
        return cls(int(width), int(height), int(resized_width), int(resized_height))

    def extent(self, frame: Frame) -> tuple[float, float]:
        """`(X, Y)` size of the image in `frame` (see the module docstring)."""
        return frame_extent(frame, self.width, self.height, self.resized_width, self.resized_height)

    @property
    def scale(self) -> tuple[float, float]:
        """`(W_r / W, H_r / H)`: original pixels -> model-input (`"resized"`) pixels."""
        return self.resized_width / self.width, self.resized_height / self.height


@dataclass(frozen=True)
class FrameSpec:
    """
    One coordinate frame: `extent(W, H, W_r, H_r) -> (X, Y)` is the image's size in the frame (scalars or numpy
    arrays, one entry per image); `needs_resized` says whether the model-input size `(W_r, H_r)` is required.
    """

    name: str
    extent: Callable[[Any, Any, Any, Any], tuple[Any, Any]]
    needs_resized: bool = False
    description: str = ""


_FRAMES: dict[str, FrameSpec] = {}


def register_frame(
    name: str,
    extent: Callable[[Any, Any, Any, Any], tuple[Any, Any]],
    *,
    needs_resized: bool = False,
    description: str = "",
    overwrite: bool = False,
) -> FrameSpec:
    """
    Register a coordinate frame (an axis-aligned scaling of the source image).

    Example:

    ```python
    >>> _ = register_frame("grid_100", lambda w, h, rw, rh: (100.0, 100.0), description="percent", overwrite=True)
    >>> convert_boxes([[0, 0, 320, 240]], "original", "grid_100", ImageGeometry(640, 480, 644, 476)).tolist()
    [[0.0, 0.0, 50.0, 50.0]]

    ```
    """
    if name in _FRAMES and not overwrite:
        raise ValueError(f"Frame {name!r} is already registered; pass overwrite=True to replace it.")
    spec = FrameSpec(name, extent, needs_resized, description)
    _FRAMES[name] = spec
    return spec


def list_frames() -> list[str]:
    """Names of the registered frames."""
    return list(_FRAMES)


def get_frame(frame: str | FrameSpec) -> FrameSpec:
    """The registered frame `frame`; a model family name stands for that family's box frame."""
    if isinstance(frame, FrameSpec):
        return frame
    spec = _FRAMES.get(frame)
    if spec is not None:
        return spec
    from . import families  # lazy: the family layer sits on top of this module

    if isinstance(frame, str) and frame in families.list_families():
        return _FRAMES[families.get_family(frame).box_frame]
    raise ValueError(
        f"Unknown coordinate frame {frame!r}; expected one of {list_frames()} or a model family name "
        f"({families.list_families()}). Register a frame with trl_perception.geometry.register_frame."
    )


# Named functions rather than lambdas: rewards hold their frame, and rewards must pickle (multiprocessing).
def _original_extent(w, h, rw, rh):
    return w, h


def _normalized_extent(w, h, rw, rh):
    return 1.0, 1.0


def _grid_1000_extent(w, h, rw, rh):
    return GRID_1000, GRID_1000


def _resized_extent(w, h, rw, rh):
    return rw, rh


register_frame("original", _original_extent, description="pixels of the source image")
register_frame("normalized", _normalized_extent, description="original / (W, H)")
register_frame("grid_1000", _grid_1000_extent, description="original / (W, H) * 1000 (relative grid)")
register_frame("resized", _resized_extent, needs_resized=True, description="pixels of the smart-resized model input")

# The built-in frames (frames registered later are listed by `list_frames()`).
FRAMES: tuple[str, ...] = tuple(_FRAMES)


def frame_extent(frame: Frame, width: Any, height: Any, resized_width: Any = None, resized_height: Any = None):
    """
    `(X, Y)` extent of an image in `frame`; works on scalars or on numpy arrays of sizes (one per image).

    `resized_width` / `resized_height` are only needed for frames with `needs_resized` (`"resized"`).
    """
    spec = get_frame(frame)
    if spec.needs_resized and (resized_width is None or resized_height is None):
        raise ValueError(f"The {spec.name!r} frame needs the resized (model input) size of the image.")
    return spec.extent(width, height, resized_width, resized_height)


def frame_scale(src: Frame, dst: Frame, geometry: ImageGeometry) -> tuple[float, float]:
    """
    `(s_x, s_y)` such that `x_dst = x_src * s_x` and `y_dst = y_src * s_y`.

    Example:

    ```python
    >>> frame_scale("original", "grid_1000", ImageGeometry(500, 250, 504, 252))
    (2.0, 4.0)

    ```
    """
    sx, sy = geometry.extent(src)
    dx, dy = geometry.extent(dst)
    return dx / sx, dy / sy


def convert_points(points: Any, src: Frame, dst: Frame, geometry: ImageGeometry) -> Any:
    """
    Convert `[x, y]` points (shape `(..., 2)`) from frame `src` to frame `dst`.

    Example:

    ```python
    >>> g = ImageGeometry(width=640, height=480, resized_width=644, resized_height=476)
    >>> convert_points([[320, 240]], "original", "normalized", g).tolist()
    [[0.5, 0.5]]

    ```
    """
    arr = _to_numpy(points, 2)
    sx, sy = frame_scale(src, dst, geometry)
    return _like(arr * np.array([sx, sy]), points)


def convert_boxes(boxes: Any, src: Frame, dst: Frame, geometry: ImageGeometry) -> Any:
    """
    Convert ``xyxy`` boxes (shape `(..., 4)`) from frame `src` to frame `dst`; floats are kept (no rounding).

    Example:

    ```python
    >>> g = ImageGeometry.from_size(640, 428, max_pixels=1003520)  # resized to 644 x 420
    >>> convert_boxes([[146, 137, 615, 415]], "original", "resized", g).round().tolist()
    [[147.0, 134.0, 619.0, 407.0]]
    >>> convert_boxes([[0, 0, 640, 428]], "original", "grid_1000", g).tolist()
    [[0.0, 0.0, 1000.0, 1000.0]]

    ```
    """
    arr = _to_numpy(boxes, 4)
    sx, sy = frame_scale(src, dst, geometry)
    return _like(arr * np.array([sx, sy, sx, sy]), boxes)


# ----------------------------------------------------------------------------------------------------------------
# IoU / GIoU
# ----------------------------------------------------------------------------------------------------------------


def _pairwise(a: np.ndarray, b: np.ndarray, one: float, giou: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Pairwise IoU (clipped to [0, 1]) and optionally GIoU (clipped to [-1, 1]); call under `np.errstate(**_QUIET)`."""
    area_a = _area(a, one)
    area_b = _area(b, one)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.fmax(rb - lt + one, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    iou = np.clip(_safe_ratio(inter, union), 0.0, 1.0)
    if not giou:
        return iou, None
    lt = np.minimum(a[:, None, :2], b[None, :, :2])
    rb = np.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = np.fmax(rb - lt + one, 0.0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou, np.clip(iou - _safe_ratio(enclosing - union, enclosing), -1.0, 1.0)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # IoU is 0 when the union is not a positive finite number (two empty boxes, overflow); never NaN.
    ok = (den > 0) & np.isfinite(den) & np.isfinite(num)
    return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


def box_iou(boxes1: Any, boxes2: Any, plus_one: bool = False) -> Any:
    """
    Pairwise intersection-over-union of two sets of ``xyxy`` boxes.

    Args:
        boxes1 (`array-like` of shape `(N, 4)`):
            First set of boxes.
        boxes2 (`array-like` of shape `(M, 4)`):
            Second set of boxes.
        plus_one (`bool`, *optional*, defaults to `False`):
            Legacy inclusive-pixel convention (widths are `x2 - x1 + 1`), as in VLM-R1 and old Pascal VOC code. The
            default is continuous coordinates, as in Perception-R1, pycocotools and torchvision.

    Returns:
        `np.ndarray` (or `torch.Tensor`) of shape `(N, M)` with values in `[0, 1]`. Degenerate, inverted or NaN boxes
        give 0; touching boxes give 0; identical non-degenerate boxes give 1.

    Example:

    ```python
    >>> box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]]).tolist()
    [[1.0, 0.3333333333333333, 0.0]]

    ```
    """
    a = _to_numpy(boxes1, 4).reshape(-1, 4)
    b = _to_numpy(boxes2, 4).reshape(-1, 4)
    with np.errstate(**_QUIET):
        iou, _ = _pairwise(a, b, 1.0 if plus_one else 0.0, giou=False)
    return _like(iou, boxes1)


def generalized_box_iou(boxes1: Any, boxes2: Any, plus_one: bool = False) -> Any:
    """
    Pairwise generalized IoU (Rezatofighi et al., 2019): `IoU - (C - U) / C`, with `C` the smallest enclosing box.

    Returns an `(N, M)` array in `[-1, 1]`. Degenerate pairs (enclosing area 0, non-finite) reduce to their IoU (0).
    Inverted boxes do not raise (unlike DETR's `generalized_box_iou`, which asserts): they have zero area.

    Example:

    ```python
    >>> generalized_box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [20, 0, 30, 10]]).tolist()
    [[1.0, -0.3333333333333333]]

    ```
    """
    a = _to_numpy(boxes1, 4).reshape(-1, 4)
    b = _to_numpy(boxes2, 4).reshape(-1, 4)
    with np.errstate(**_QUIET):
        _, giou = _pairwise(a, b, 1.0 if plus_one else 0.0, giou=True)
    return _like(giou, boxes1)


def box_iou_giou(boxes1: Any, boxes2: Any, plus_one: bool = False) -> tuple[Any, Any]:
    """
    `(box_iou(boxes1, boxes2), generalized_box_iou(boxes1, boxes2))` computed together (the intersection and union
    are shared), for callers that need both, such as DETR-style matching.

    Example:

    ```python
    >>> iou, giou = box_iou_giou([[0, 0, 10, 10]], [[20, 0, 30, 10]])
    >>> iou.tolist(), giou.tolist()
    ([[0.0]], [[-0.3333333333333333]])

    ```
    """
    a = _to_numpy(boxes1, 4).reshape(-1, 4)
    b = _to_numpy(boxes2, 4).reshape(-1, 4)
    with np.errstate(**_QUIET):
        iou, giou = _pairwise(a, b, 1.0 if plus_one else 0.0, giou=True)
    return _like(iou, boxes1), _like(giou, boxes1)


def _paired(boxes1: Any, boxes2: Any, plus_one: bool, giou: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Element-wise IoU and optionally GIoU of two `(N, 4)` arrays (numpy results)."""
    a = _to_numpy(boxes1, 4).reshape(-1, 4)
    b = _to_numpy(boxes2, 4).reshape(-1, 4)
    if a.shape != b.shape:
        raise ValueError(f"Paired IoU needs two arrays of the same shape, got {a.shape} and {b.shape}.")
    one = 1.0 if plus_one else 0.0
    with np.errstate(**_QUIET):
        wh = np.fmax(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]) + one, 0.0)
        inter = wh[:, 0] * wh[:, 1]
        union = _area(a, one) + _area(b, one) - inter
        iou = np.clip(_safe_ratio(inter, union), 0.0, 1.0)
        if not giou:
            return iou, None
        ewh = np.fmax(np.maximum(a[:, 2:], b[:, 2:]) - np.minimum(a[:, :2], b[:, :2]) + one, 0.0)
        enclosing = ewh[:, 0] * ewh[:, 1]
        return iou, np.clip(iou - _safe_ratio(enclosing - union, enclosing), -1.0, 1.0)


def paired_box_iou(boxes1: Any, boxes2: Any, plus_one: bool = False) -> Any:
    """
    Element-wise IoU of `boxes1[i]` with `boxes2[i]` (shapes `(N, 4)`); the diagonal of [`box_iou`] in O(N).

    Example:

    ```python
    >>> paired_box_iou([[0, 0, 10, 10], [0, 0, 1, 1]], [[5, 0, 15, 10], [2, 2, 3, 3]]).tolist()
    [0.3333333333333333, 0.0]

    ```
    """
    return _like(_paired(boxes1, boxes2, plus_one, giou=False)[0], boxes1)


def paired_generalized_box_iou(boxes1: Any, boxes2: Any, plus_one: bool = False) -> Any:
    """Element-wise GIoU of `boxes1[i]` with `boxes2[i]`; the diagonal of [`generalized_box_iou`] in O(N)."""
    return _like(_paired(boxes1, boxes2, plus_one, giou=True)[1], boxes1)


def paired_box_iou_giou(boxes1: Any, boxes2: Any, plus_one: bool = False) -> tuple[Any, Any]:
    """Element-wise `(IoU, GIoU)` computed together (shared intersection and union)."""
    iou, giou = _paired(boxes1, boxes2, plus_one, giou=True)
    return _like(iou, boxes1), _like(giou, boxes1)


# ----------------------------------------------------------------------------------------------------------------
# Sanitizer
# ----------------------------------------------------------------------------------------------------------------


def sanitize_boxes(
    boxes: Any,
    extent: tuple[float, float] | None = None,
    out_of_image: Literal["clip", "reject", "keep"] = "clip",
    inverted: Literal["reject", "swap"] = "reject",
) -> tuple[np.ndarray, np.ndarray]:
    """
    Decide what happens to invalid ``xyxy`` boxes before scoring. Returns `(boxes, valid)`: float64 boxes of shape
    `(N, 4)` (rejected rows are set to 0) and a boolean mask of shape `(N,)`.

    Rules, applied in this order:

    1. A box with any NaN or infinite coordinate is **rejected**.
    2. An inverted box (`x2 < x1` or `y2 < y1`) is **rejected** (`inverted="reject"`, default) or has its
       coordinates swapped (`inverted="swap"`).
    3. With `extent=(X, Y)` (the frame's image size, or one `(X, Y)` per box as an `(N, 2)` array), a box outside `[0, X] x [0, Y]` is **clipped** to it
       (`out_of_image="clip"`, default; a box entirely outside becomes zero-area and scores IoU 0), **rejected** if any
       coordinate lies outside (`"reject"`), or left as is (`"keep"`).

    Zero-area boxes (`x1 == x2` or `y1 == y2`) stay valid: they score IoU 0 against everything.

    Example:

    ```python
    >>> boxes, valid = sanitize_boxes([[-5, 0, 50, 10], [3, 3, 1, 1], [0, float("nan"), 1, 1]], extent=(20, 20))
    >>> boxes.tolist(), valid.tolist()
    ([[0.0, 0.0, 20.0, 10.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], [True, False, False])

    ```
    """
    if out_of_image not in ("clip", "reject", "keep"):
        raise ValueError(f"out_of_image must be 'clip', 'reject' or 'keep', got {out_of_image!r}.")
    if inverted not in ("reject", "swap"):
        raise ValueError(f"inverted must be 'reject' or 'swap', got {inverted!r}.")
    arr = _to_numpy(boxes, 4).reshape(-1, 4).copy()
    valid = np.isfinite(arr).all(axis=1)
    arr[~valid] = 0.0
    if inverted == "swap":
        arr = np.concatenate([np.minimum(arr[:, :2], arr[:, 2:]), np.maximum(arr[:, :2], arr[:, 2:])], axis=1)
    else:
        valid &= (arr[:, 2] >= arr[:, 0]) & (arr[:, 3] >= arr[:, 1])
    if extent is not None and out_of_image != "keep":
        ex, ey = _extent_columns(extent, len(arr))
        if out_of_image == "clip":
            arr[:, 0::2] = np.clip(arr[:, 0::2], 0.0, ex)
            arr[:, 1::2] = np.clip(arr[:, 1::2], 0.0, ey)
        else:
            valid &= (arr[:, :2] >= 0).all(axis=1) & (arr[:, 2:3] <= ex).all(axis=1) & (arr[:, 3:4] <= ey).all(axis=1)
    arr[~valid] = 0.0
    return arr, valid


def _extent_columns(extent: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`(X, Y)` as column vectors of shape `(n, 1)`, from one extent or one extent per row (shape `(n, 2)`)."""
    ext = np.asarray(extent, dtype=np.float64)
    if ext.ndim == 1:
        ext = np.broadcast_to(ext, (n, 2))
    return ext[:, 0:1], ext[:, 1:2]


def sanitize_points(
    points: Any, extent: tuple[float, float] | None = None, out_of_image: Literal["clip", "reject", "keep"] = "clip"
) -> tuple[np.ndarray, np.ndarray]:
    """
    Points counterpart of [`sanitize_boxes`]: non-finite points are rejected; points outside `[0, X] x [0, Y]` are
    clipped (default), rejected or kept. `extent` is one `(X, Y)` or one per point. Returns `(points, valid)`.

    Example:

    ```python
    >>> pts, valid = sanitize_points([[5, 25], [float("inf"), 1]], extent=(10, 10))
    >>> pts.tolist(), valid.tolist()
    ([[5.0, 10.0], [0.0, 0.0]], [True, False])

    ```
    """
    if out_of_image not in ("clip", "reject", "keep"):
        raise ValueError(f"out_of_image must be 'clip', 'reject' or 'keep', got {out_of_image!r}.")
    arr = _to_numpy(points, 2).reshape(-1, 2).copy()
    valid = np.isfinite(arr).all(axis=1)
    arr[~valid] = 0.0
    if extent is not None and out_of_image != "keep":
        ex, ey = _extent_columns(extent, len(arr))
        if out_of_image == "clip":
            arr[:, 0:1] = np.clip(arr[:, 0:1], 0.0, ex)
            arr[:, 1:2] = np.clip(arr[:, 1:2], 0.0, ey)
        else:
            valid &= (arr >= 0).all(axis=1) & (arr[:, 0:1] <= ex).all(axis=1) & (arr[:, 1:2] <= ey).all(axis=1)
    arr[~valid] = 0.0
    return arr, valid

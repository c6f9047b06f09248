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

import itertools
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

from trl_perception.geometry import (
    FRAMES,
    QWEN_MAX_PIXELS,
    QWEN_MIN_PIXELS,
    ImageGeometry,
    box_area,
    box_convert,
    box_iou,
    box_iou_giou,
    convert_boxes,
    convert_points,
    frame_scale,
    generalized_box_iou,
    paired_box_iou,
    paired_box_iou_giou,
    paired_generalized_box_iou,
    sanitize_boxes,
    sanitize_points,
    smart_resize,
)


# ----------------------------------------------------------------------------------------------------------------
# smart_resize
# ----------------------------------------------------------------------------------------------------------------


def _outcome(fn, *args):
    try:
        return fn(*args)
    except (ValueError, ZeroDivisionError) as exc:
        return type(exc)


def test_smart_resize_equals_transformers_on_thousands_of_sizes():
    rng = random.Random(0)
    limits = [(3136, 12845056), (56 * 56, 14 * 14 * 4 * 1280), (3136, 1_000_000), (256 * 28 * 28, 1280 * 28 * 28)]
    sizes = [(h, w) for h in (1, 2, 13, 27, 28, 29, 41, 42, 56, 70) for w in (1, 5, 28, 30, 84, 5000, 5601)]
    sizes += [(rng.randint(1, 8000), rng.randint(1, 8000)) for _ in range(3000)]
    sizes += [(rng.randint(1, 120), rng.randint(1, 120)) for _ in range(1000)]  # upscale branch
    sizes += [(0, 10), (10, 0), (1, 201), (201, 1), (1, 200)]  # errors: zero side, aspect ratio > 200
    checked = 0
    for (h, w), (lo, hi) in itertools.product(sizes, limits):
        expected = _outcome(hf_smart_resize, h, w, 28, lo, hi)
        assert _outcome(smart_resize, h, w, 28, lo, hi) == expected, (h, w, lo, hi)
        checked += 1
    assert checked > 16000
    # Default arguments are transformers' too.
    assert smart_resize(1234, 987) == hf_smart_resize(1234, 987)


@pytest.mark.parametrize(
    "size, max_pixels, expected",
    [
        ((480, 640), QWEN_MAX_PIXELS, (476, 644)),
        ((427, 640), QWEN_MAX_PIXELS, (420, 644)),
        ((428, 640), QWEN_MAX_PIXELS, (420, 644)),
        ((640, 427), QWEN_MAX_PIXELS, (644, 420)),
        ((3000, 4000), QWEN_MAX_PIXELS, (2996, 4004)),
        ((2000, 3000), 1_000_000, (812, 1204)),
        ((2000, 3000), 1_003_520, (812, 1204)),
        ((1000, 1000), 1_000_000, (980, 980)),
        ((1024, 1024), 1_000_000, (980, 980)),
        ((42, 70), QWEN_MAX_PIXELS, (56, 56)),  # banker's rounding of 1.5 and 2.5, then the min_pixels branch
    ],
)
def test_smart_resize_reference_vectors(size, max_pixels, expected):
    assert smart_resize(*size, factor=28, min_pixels=QWEN_MIN_PIXELS, max_pixels=max_pixels) == expected


def test_smart_resize_errors():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2500)
    with pytest.raises(ZeroDivisionError):
        smart_resize(0, 100)


def test_image_geometry_from_size_uses_checkpoint_defaults():
    g = ImageGeometry.from_size(640, 480)
    assert (g.width, g.height, g.resized_width, g.resized_height) == (640, 480, 644, 476)
    assert g.scale == (644 / 640, 476 / 480)
    assert ImageGeometry.from_size(3000, 2000, max_pixels=1_000_000).extent("qwen2_5_vl") == (1204, 812)


# ----------------------------------------------------------------------------------------------------------------
# Formats and frames
# ----------------------------------------------------------------------------------------------------------------


def test_box_convert_hand_values():
    xyxy = np.array([[10.0, 20.0, 40.0, 60.0]])
    np.testing.assert_allclose(box_convert(xyxy, "xyxy", "xywh"), [[10, 20, 30, 40]])
    np.testing.assert_allclose(box_convert(xyxy, "xyxy", "cxcywh"), [[25, 40, 30, 40]])
    np.testing.assert_allclose(box_convert([[25, 40, 30, 40]], "cxcywh", "xywh"), [[10, 20, 30, 40]])
    assert box_convert(np.zeros((0, 4)), "xyxy", "xywh").shape == (0, 4)
    with pytest.raises(ValueError):
        box_convert(xyxy, "xyxy", "yxyx")
    with pytest.raises(ValueError):
        box_convert([[1, 2, 3]], "xyxy", "xywh")


def test_torch_tensors_round_trip_as_tensors():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    out = box_convert(boxes, "xyxy", "cxcywh")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    iou = box_iou(boxes, boxes)
    assert isinstance(iou, torch.Tensor) and iou.shape == (2, 2)
    assert iou[0, 1].item() == pytest.approx(1 / 3)
    g = ImageGeometry(100, 50, 112, 56)
    assert isinstance(convert_boxes(boxes, "original", "qwen2_vl", g), torch.Tensor)


def test_frame_conversions_hand_values():
    # The Qwen notebook example: a COCO box on a 640x428 image, resized to 644x420 (max_pixels 1,003,520).
    g = ImageGeometry.from_size(640, 428, max_pixels=1_003_520)
    assert (g.resized_width, g.resized_height) == (644, 420)
    np.testing.assert_array_equal(
        np.round(convert_boxes([[146, 137, 615, 415]], "original", "qwen2_5_vl", g)), [[147, 134, 619, 407]]
    )
    g = ImageGeometry(width=500, height=250, resized_width=504, resized_height=252)
    np.testing.assert_allclose(
        convert_boxes([[50, 25, 500, 250]], "original", "qwen2_vl", g), [[100, 100, 1000, 1000]]
    )
    np.testing.assert_allclose(convert_boxes([[50, 25, 500, 250]], "original", "normalized", g), [[0.1, 0.1, 1, 1]])
    np.testing.assert_allclose(
        convert_boxes([[100, 100, 1000, 1000]], "qwen2_vl", "qwen2_5_vl", g), [[50.4, 25.2, 504, 252]]
    )
    np.testing.assert_allclose(convert_points([[504, 252]], "qwen2_5_vl", "original", g), [[500, 250]])
    assert frame_scale("original", "original", g) == (1.0, 1.0)
    with pytest.raises(ValueError):
        convert_boxes([[0, 0, 1, 1]], "original", "pixels", g)


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(28, 6000),
    h=st.integers(28, 6000),
    src=st.sampled_from(FRAMES),
    dst=st.sampled_from(FRAMES),
    box=st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=4, max_size=4),
)
def test_frame_conversions_round_trip(w, h, src, dst, box):
    if max(w, h) / min(w, h) > 200:
        return
    g = ImageGeometry.from_size(w, h)
    there = convert_boxes([box], src, dst, g)
    back = convert_boxes(there, dst, src, g)
    np.testing.assert_allclose(back, [box], rtol=1e-9, atol=1e-6)
    pts = convert_points([box[:2]], src, dst, g)
    np.testing.assert_allclose(convert_points(pts, dst, src, g), [box[:2]], rtol=1e-9, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(box=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=4, max_size=4))
def test_box_convert_round_trip(box):
    for fmt in ("xywh", "cxcywh"):
        back = box_convert(box_convert([box], "xyxy", fmt), fmt, "xyxy")
        np.testing.assert_allclose(back, [box], rtol=1e-9, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# IoU / GIoU
# ----------------------------------------------------------------------------------------------------------------


def test_iou_hand_values():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [2, 2, 7, 7], [0, 0, 20, 20], [100, 100, 110, 110]]
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 25 / 100, 100 / 400, 0.0]])
    # IoU exactly 0.5: [0,0,10,10] vs [0,0,10,20] -> 100 / 200.
    assert box_iou(a, [[0, 0, 10, 20]])[0, 0] == 0.5


def test_iou_plus_one_convention():
    # Inclusive pixels: [0,0,9,9] covers 10x10 pixels; [5,0,14,9] shares 5x10 of them.
    assert box_iou([[0, 0, 9, 9]], [[5, 0, 14, 9]], plus_one=True)[0, 0] == pytest.approx(50 / 150)
    assert box_iou([[0, 0, 9, 9]], [[5, 0, 14, 9]])[0, 0] == pytest.approx(36 / 126)
    # A single pixel box is a real box in the +1 convention, degenerate in the continuous one.
    assert box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]], plus_one=True)[0, 0] == 1.0
    assert box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0
    assert box_area([[0, 0, 9, 9]], plus_one=True)[0] == 100.0


@pytest.mark.parametrize(
    "box",
    [
        [5, 5, 5, 5],  # zero area
        [5, 5, 5, 9],  # zero width
        [9, 9, 1, 1],  # inverted
        [float("nan"), 0, 10, 10],
        [0, 0, float("inf"), 10],
        [-float("inf"), -float("inf"), float("inf"), float("inf")],
    ],
)
def test_iou_degenerate_boxes_give_defined_results(box):
    others = [[0, 0, 10, 10], box, [5, 5, 5, 5]]
    iou = box_iou([box], others)
    giou = generalized_box_iou([box], others)
    assert np.isfinite(iou).all() and np.isfinite(giou).all()
    assert ((iou >= 0) & (iou <= 1)).all() and ((giou >= -1) & (giou <= 1)).all()
    assert iou[0, 2] == 0.0  # against a zero-area box


def test_iou_huge_coordinates_do_not_overflow_to_nan():
    huge = [[-1e308, -1e308, 1e308, 1e308], [0, 0, 1e308, 1e308], [0, 0, 10, 10]]
    iou = box_iou(huge, huge)
    assert np.isfinite(iou).all() and ((iou >= 0) & (iou <= 1)).all()
    assert iou[2, 2] == 1.0


def test_giou_hand_values():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [20, 0, 30, 10], [5, 0, 15, 10], [1000, 1000, 1010, 1010]]
    # disjoint: C = 30x10, U = 200 -> -100/300; half overlap: IoU 1/3, C = U -> 1/3.
    expected = [1.0, -1 / 3, 1 / 3, -(1010 * 1010 - 200) / (1010 * 1010)]  # far: IoU 0, C = 1010^2
    np.testing.assert_allclose(generalized_box_iou(a, b)[0], expected)
    # Inverted boxes do not raise (DETR's asserts, Perception-R1 D7).
    assert np.isfinite(generalized_box_iou([[10, 10, 0, 0]], a)).all()


def test_empty_inputs_have_empty_shapes():
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    assert generalized_box_iou([[0, 0, 1, 1]], []).shape == (1, 0)


_coord = st.floats(-1e4, 1e4, allow_nan=False)
_box = st.tuples(_coord, _coord, _coord, _coord)


@settings(max_examples=300, deadline=None)
@given(a=st.lists(_box, min_size=1, max_size=6), b=st.lists(_box, min_size=1, max_size=6), plus_one=st.booleans())
def test_iou_properties(a, b, plus_one):
    iou_ab = box_iou(a, b, plus_one=plus_one)
    np.testing.assert_allclose(iou_ab, box_iou(b, a, plus_one=plus_one).T, rtol=1e-12, atol=1e-12)
    assert ((iou_ab >= 0) & (iou_ab <= 1)).all()
    giou = generalized_box_iou(a, b, plus_one=plus_one)
    assert ((giou >= -1) & (giou <= 1 + 1e-12)).all()
    assert (giou <= iou_ab + 1e-9).all()
    n = min(len(a), len(b))
    np.testing.assert_allclose(paired_box_iou(a[:n], b[:n], plus_one=plus_one), np.diag(iou_ab)[:n], atol=1e-12)
    np.testing.assert_allclose(paired_generalized_box_iou(a[:n], b[:n], plus_one), np.diag(giou)[:n], atol=1e-12)
    both = paired_box_iou_giou(a[:n], b[:n], plus_one)
    np.testing.assert_allclose(both[0], np.diag(iou_ab)[:n], atol=1e-12)
    np.testing.assert_allclose(both[1], np.diag(giou)[:n], atol=1e-12)
    pair_iou, pair_giou = box_iou_giou(a, b, plus_one)
    np.testing.assert_array_equal(pair_iou, iou_ab)
    np.testing.assert_array_equal(pair_giou, giou)


@settings(max_examples=200, deadline=None)
@given(x=_coord, y=_coord, w=st.floats(1e-2, 1e4), h=st.floats(1e-2, 1e4))
def test_identical_boxes_have_iou_one(x, y, w, h):
    box = [[x, y, x + w, y + h]]
    if box_area(box)[0] <= 0:  # float rounding can swallow a tiny side next to a large coordinate
        return
    assert box_iou(box, box)[0, 0] == pytest.approx(1.0)
    assert generalized_box_iou(box, box)[0, 0] == pytest.approx(1.0)


def test_paired_iou_requires_matching_shapes():
    with pytest.raises(ValueError):
        paired_box_iou([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 2, 2]])


# ----------------------------------------------------------------------------------------------------------------
# Sanitizer
# ----------------------------------------------------------------------------------------------------------------


def test_sanitize_boxes_rules():
    boxes = [[-5, 0, 50, 10], [3, 3, 1, 1], [0, math.nan, 1, 1], [0, 0, math.inf, 1], [2, 2, 2, 2], [30, 30, 40, 40]]
    out, valid = sanitize_boxes(boxes, extent=(20, 20))
    assert valid.tolist() == [True, False, False, False, True, True]
    np.testing.assert_array_equal(out[0], [0, 0, 20, 10])
    np.testing.assert_array_equal(out[5], [20, 20, 20, 20])  # entirely outside: clipped to zero area
    np.testing.assert_array_equal(out[~valid], 0)

    out, valid = sanitize_boxes(boxes, extent=(20, 20), out_of_image="reject", inverted="swap")
    assert valid.tolist() == [False, True, False, False, True, False]
    np.testing.assert_array_equal(out[1], [1, 1, 3, 3])

    out, valid = sanitize_boxes(boxes, extent=None)
    assert valid.tolist() == [True, False, False, False, True, True]
    np.testing.assert_array_equal(out[0], [-5, 0, 50, 10])
    assert sanitize_boxes([], extent=(1, 1))[0].shape == (0, 4)
    with pytest.raises(ValueError):
        sanitize_boxes(boxes, out_of_image="drop")


def test_sanitize_points_rules():
    out, valid = sanitize_points([[5, 25], [math.inf, 1], [-1, 3]], extent=(10, 10))
    assert valid.tolist() == [True, False, True]
    np.testing.assert_array_equal(out, [[5, 10], [0, 0], [0, 3]])
    _, valid = sanitize_points([[5, 25], [math.inf, 1], [-1, 3], [1, 1]], extent=(10, 10), out_of_image="reject")
    assert valid.tolist() == [False, False, False, True]


def test_sanitize_accepts_one_extent_per_box():
    boxes = [[0, 0, 50, 50], [0, 0, 50, 50]]
    out, valid = sanitize_boxes(boxes, extent=np.array([[10, 20], [100, 100]]))
    assert valid.all()
    np.testing.assert_array_equal(out, [[0, 0, 10, 20], [0, 0, 50, 50]])
    _, valid = sanitize_boxes(boxes, extent=np.array([[10, 20], [100, 100]]), out_of_image="reject")
    assert valid.tolist() == [False, True]
    pts, valid = sanitize_points([[50, 50], [50, 50]], extent=np.array([[10, 20], [100, 100]]))
    np.testing.assert_array_equal(pts, [[10, 20], [50, 50]])

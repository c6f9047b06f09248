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
"""Throughput of the perception rewards (completions / second, one process, one thread).

Fixed seeded workloads, called the way TRL calls a reward (conversational completions, dataset columns as keyword
lists, a `log_metric` callback), in batches of `--batch-size` completions:

| workload | completion | ground truth |
|---|---|---|
| grounding | Qwen2.5-VL JSON, one box | one box |
| detection | Qwen2.5-VL JSON, 20 labelled boxes | 20 boxes with COCO ids |
| counting | Qwen2.5-VL JSON, 10 boxes (centres are matched) | 10 points |
| ocr | a 2,000-character page with ~3% character edits | the page |

Throughput is reported per second of process CPU time (the targets' "one core", robust to other load on a shared
machine) and per second of wall-clock time; targets are checked against CPU time.

Usage: `python benchmarks/rewards.py [--batch-size 256] [--repeats 5] [--json out.json]`.
"""

from __future__ import annotations

import os


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: no BLAS thread pool

import argparse
import json
import platform
import statistics
import string
import time

import numpy as np

from trl_perception.rewards import COCO_CATEGORIES, get_reward


TARGETS = {"grounding": 100_000, "counting": 20_000, "detection": 5_000, "ocr": 2_000}


def _sizes(rng: np.random.Generator, n: int) -> tuple[list[int], list[int]]:
    return rng.integers(320, 1281, n).tolist(), rng.integers(240, 961, n).tolist()


def _box(rng, w, h):
    x1, y1 = rng.uniform(0, w * 0.7), rng.uniform(0, h * 0.7)
    return [x1, y1, x1 + rng.uniform(8, w * 0.3), y1 + rng.uniform(8, h * 0.3)]


def _jitter(rng, box):
    """A predicted box: the ground truth moved by a few pixels, written as integers like Qwen2.5-VL does."""
    return [round(float(v + rng.normal(0, 4))) for v in box]


def _json_answer(items: list[dict]) -> str:
    return "```json\n" + json.dumps(items, indent=2) + "\n```"


def _conversational(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def grounding_workload(rng, n):
    widths, heights = _sizes(rng, n)
    boxes, completions = [], []
    for w, h in zip(widths, heights, strict=True):
        gt = _box(rng, w, h)
        boxes.append([gt])
        item = {"bbox_2d": _jitter(rng, gt), "label": "the man in the red shirt"}
        completions.append(_conversational(_json_answer([item])))
    return completions, {"boxes": boxes, "width": widths, "height": heights, "task": ["grounding"] * n}


def detection_workload(rng, n, n_objects=20):
    widths, heights = _sizes(rng, n)
    ids = list(COCO_CATEGORIES)
    boxes, category_ids, completions = [], [], []
    for w, h in zip(widths, heights, strict=True):
        gt = [_box(rng, w, h) for _ in range(n_objects)]
        cats = rng.choice(ids, n_objects).tolist()
        items = []
        for box, cat in zip(gt, cats, strict=True):
            label = COCO_CATEGORIES[cat] if rng.random() < 0.8 else COCO_CATEGORIES[int(rng.choice(ids))]
            items.append({"bbox_2d": _jitter(rng, box), "label": label})
        order = rng.permutation(n_objects)
        completions.append(_conversational(_json_answer([items[k] for k in order])))
        boxes.append(gt)
        category_ids.append(cats)
    return completions, {
        "boxes": boxes,
        "category_ids": category_ids,
        "width": widths,
        "height": heights,
        "task": ["detection"] * n,
    }


def counting_workload(rng, n, n_points=10):
    widths, heights = _sizes(rng, n)
    points, counts, completions = [], [], []
    for w, h in zip(widths, heights, strict=True):
        pts = np.column_stack([rng.uniform(10, w - 10, n_points), rng.uniform(10, h - 10, n_points)])
        points.append(pts.tolist())
        counts.append(n_points)
        items = [{"bbox_2d": _jitter(rng, [x - 8, y - 8, x + 8, y + 8]), "label": "apple"} for x, y in pts]
        completions.append(_conversational(_json_answer(items)))
    return completions, {
        "points": points,
        "count": counts,
        "width": widths,
        "height": heights,
        "task": ["counting"] * n,
    }


def ocr_workload(rng, n, n_chars=2000):
    alphabet = string.ascii_letters + string.digits + ".,;:'-()"
    texts, completions = [], []
    for _ in range(n):
        words, length = [], 0
        while length < n_chars:
            word = "".join(rng.choice(list(alphabet), int(rng.integers(1, 10))))
            words.append(word)
            length += len(word) + 1
        page = " ".join(words)[:n_chars]
        chars = list(page)
        for pos in rng.integers(0, len(chars), n_chars * 3 // 100):
            chars[pos] = str(rng.choice(list(alphabet)))
        texts.append(page)
        completions.append(_conversational("".join(chars).replace(" ", "\n", 20)))
    return completions, {"text": texts, "task": ["ocr"] * n}


BENCHMARKS = [
    # (reward name, options, workload, target key)
    ("iou", {}, "grounding", "grounding"),
    ("iou_squared", {}, "grounding", "grounding"),
    ("giou", {}, "grounding", "grounding"),
    ("iou_threshold", {}, "grounding", "grounding"),
    ("box_format", {}, "grounding", None),
    ("answer_format", {}, "grounding", None),
    ("count_match", {}, "counting", "counting"),
    ("count_exact", {}, "counting", "counting"),
    ("detection", {"preset": "pr1"}, "detection", "detection"),
    ("detection", {"preset": "paper"}, "detection", "detection"),
    ("detection", {"preset": "vlm_r1"}, "detection", "detection"),
    ("ocr_edit_distance", {}, "ocr", "ocr"),
]
WORKLOADS = {
    "grounding": grounding_workload,
    "detection": detection_workload,
    "counting": counting_workload,
    "ocr": ocr_workload,
}


def run(batch_size: int, n_batches: int, repeats: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    data = {name: [make(rng, batch_size) for _ in range(n_batches)] for name, make in WORKLOADS.items()}
    results = []
    for name, options, workload, target_key in BENCHMARKS:
        reward = get_reward(name, **options)
        logged: list[tuple[str, float]] = []

        def log_metric(key: str, value: float, logged=logged) -> None:
            logged.append((key, value))

        batches = data[workload]
        for completions, columns in batches:  # warm-up (smart_resize cache, lazy imports)
            reward(prompts=[None] * len(completions), completions=completions, log_metric=log_metric, **columns)
        cpu_rates, wall_rates = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            for completions, columns in batches:
                reward(prompts=[None] * len(completions), completions=completions, log_metric=log_metric, **columns)
            cpu_rates.append(batch_size * n_batches / (time.process_time() - cpu))
            wall_rates.append(batch_size * n_batches / (time.perf_counter() - wall))
        target = TARGETS.get(target_key) if target_key else None
        rate = statistics.median(cpu_rates)
        results.append(
            {
                "reward": reward.__name__,
                "workload": workload,
                "completions_per_cpu_s": rate,
                "completions_per_wall_s": statistics.median(wall_rates),
                "target": target,
                "meets_target": None if target is None else rate >= target,
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256, help="completions per reward call")
    parser.add_argument("--batches", type=int, default=8, help="distinct batches per workload")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = run(args.batch_size, args.batches, args.repeats, args.seed)
    print(f"python {platform.python_version()}, numpy {np.__version__}, batch {args.batch_size}, one thread")
    print(f"{'reward':<18} {'workload':<10} {'per CPU s':>10} {'per wall s':>11} {'target':>8}  ok")
    for r in results:
        target = f"{r['target']:,}" if r["target"] else "-"
        ok = {True: "yes", False: "NO", None: ""}[r["meets_target"]]
        print(
            f"{r['reward']:<18} {r['workload']:<10} {r['completions_per_cpu_s']:>10,.0f} "
            f"{r['completions_per_wall_s']:>11,.0f} {target:>8}  {ok}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

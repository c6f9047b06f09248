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
"""COCO detection scoring at COCO-val size: our runner path versus a direct pycocotools `COCOeval`.

A synthetic COCO val (5,000 images of 320-640 px, about 36,000 boxes of 80 gapped categories, all three area ranges)
is written as an instances JSON; synthetic predictions (85 % of the boxes found with jitter, 10 % of those with the
wrong class, about 1.5 false positives per image, score 1.0 as the runner writes them) become eval records. Then,
interleaved, the median of `--repeats` runs of:

- direct: `COCO(json)`, `loadRes(results)`, `COCOeval(...).evaluate/accumulate/summarize`;
- ours: what `trl_perception.eval.evaluate` does after generation for detection: `load_coco_gt(json)` and the runner's
  corpus metrics (COCO results from the records, `coco_results.json`, `coco_detection_metrics`).

Both must give the same 12 COCO stats; the ratio ours / direct is printed with a per-phase breakdown of ours.
(Perception-R1's evaluation, and so the runner, gives every box score 1.0: pycocotools then ranks ties in the
model's output order.)

Usage:

```bash
python benchmarks/eval.py              # 5,000 images, 2 repeats (about 5 min on 2 shared CPU cores)
python benchmarks/eval.py --quick      # 1,000 images, 1 repeat
```

The vLLM generation side of evaluation (`trl-perception eval --backend vllm` versus raw vLLM) is measured by
`benchmarks/rollouts.py`.
"""

import argparse
import contextlib
import copy
import io
import json
import os
import statistics
import sys
import tempfile
import time


sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np


MISSING_CATEGORIES = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def synthetic_coco(num_images: int, seed: int = 0):
    """A COCO-val-like GT dict and eval records of synthetic predictions (boxes `xyxy`, original pixels)."""
    rng = np.random.default_rng(seed)
    category_ids = [i for i in range(1, 91) if i not in MISSING_CATEGORIES]
    images, annotations, records = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id:012d}.jpg"})
        predictions = []
        for _ in range(int(rng.poisson(7.3))):
            # Log-uniform box sides: small (< 32^2), medium and large areas all occur, as in COCO.
            w, h = (
                np.exp(rng.uniform(np.log(4), np.log(0.8 * width))),
                np.exp(rng.uniform(np.log(4), np.log(0.8 * height))),
            )
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            category = int(rng.choice(category_ids))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
            if rng.random() < 0.85:
                jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
                x1, y1 = x + jitter[0], y + jitter[1]
                x2, y2 = x + w + jitter[2], y + h + jitter[3]
                wrong = rng.random() < 0.1
                predictions.append(
                    {
                        "bbox": [float(x1), float(y1), float(max(x2, x1 + 1)), float(max(y2, y1 + 1))],
                        "category_id": int(rng.choice(category_ids)) if wrong else category,
                        "score": 1.0,
                    }
                )
        for _ in range(int(rng.poisson(1.5))):
            w, h = rng.uniform(8, width / 2), rng.uniform(8, height / 2)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            predictions.append(
                {
                    "bbox": [float(x), float(y), float(x + w), float(y + h)],
                    "category_id": int(rng.choice(category_ids)),
                    "score": 1.0,
                }
            )
        order = rng.permutation(len(predictions))  # the model's output order
        records.append(
            {
                "image_id": image_id,
                "prediction": [predictions[i] for i in order],
                "failure": None,
                "num_unknown_labels": 0,
            }
        )
    categories = [{"id": i, "name": f"class_{i}", "supercategory": "thing"} for i in category_ids]
    gt = {"info": {}, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    return gt, records


def direct(gt_path, results, image_ids):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats)


def ours(gt_path, records, output_dir, phases):
    from trl_perception.eval import metrics as M
    from trl_perception.eval import runner
    from trl_perception.eval.tasks import EvalContext, get_eval_task

    config = runner.EvalConfig(task="detection", output_dir=output_dir, progress=False)
    os.makedirs(output_dir, exist_ok=True)  # `evaluate` creates it before generation
    start = time.perf_counter()
    coco_gt = M.load_coco_gt(gt_path)
    phases["load_coco_gt"].append(time.perf_counter() - start)
    start = time.perf_counter()
    # The detection task's corpus metric, as `evaluate` calls it (`prepare` returns the GT and its categories).
    task = get_eval_task("detection")
    metrics = task.metric(records, EvalContext(config, state=(coco_gt, None)))
    phases["corpus metrics (results, coco_results.json, COCOeval)"].append(time.perf_counter() - start)
    return [metrics[name] for name in M.COCO_STAT_NAMES]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1,000 images, 1 repeat")
    cli = parser.parse_args()
    if cli.quick:
        cli.images, cli.repeats = min(cli.images, 1000), 1

    from trl_perception.eval.runner import detection_results

    gt, records = synthetic_coco(cli.images)
    image_ids = [r["image_id"] for r in records]
    num_predictions = sum(len(r["prediction"]) for r in records)
    print(f"{cli.images} images, {len(gt['annotations'])} GT boxes, {num_predictions} predicted boxes")
    times = {"direct pycocotools": [], "ours (runner path)": []}
    phases = {"load_coco_gt": [], "corpus metrics (results, coco_results.json, COCOeval)": []}
    with tempfile.TemporaryDirectory() as workdir:
        gt_path = os.path.join(workdir, "instances_val2017.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        results = detection_results(records)  # the same COCO results list for both (xywh, original pixels)
        stats = {}
        for repeat in range(cli.repeats):
            order = list(times) if repeat % 2 == 0 else list(reversed(times))
            for name in order:
                if name == "direct pycocotools":
                    fresh = copy.deepcopy(results)  # loadRes writes into its input
                    start = time.perf_counter()
                    stats[name] = direct(gt_path, fresh, image_ids)
                else:
                    fresh = copy.deepcopy(records)  # the runner numbers records in place
                    start = time.perf_counter()
                    stats[name] = ours(gt_path, fresh, os.path.join(workdir, f"run{repeat}"), phases)
                times[name].append(time.perf_counter() - start)
    if not np.allclose(stats["direct pycocotools"], stats["ours (runner path)"], atol=1e-12):
        raise RuntimeError(f"COCO stats differ: {stats}")
    print(f"AP = {stats['ours (runner path)'][0]:.4f} (identical 12 stats from both paths)")
    for name, values in times.items():
        print(f"{name}: {statistics.median(values):.2f} s (median of {len(values)})")
    for name, values in phases.items():
        print(f"  ours, {name}: {statistics.median(values):.2f} s")
    ratio = statistics.median(times["ours (runner path)"]) / statistics.median(times["direct pycocotools"])
    print(f"scoring time ratio ours / direct pycocotools: {ratio:.3f}")


if __name__ == "__main__":
    main()

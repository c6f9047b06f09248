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
"""Build time and peak memory of the COCO detection builder on synthetic COCO-scale annotation files.

For each size, a COCO instances file (``boxes_per_image`` random boxes per image, polygon segmentations, 80 gapped
category ids) and one real JPEG per image are written, then the builder runs in a fresh subprocess that reports its
wall time and peak RSS. Linear scaling shows as constant time and memory per box; images not being held in memory
shows as a peak RSS far below the bytes of the image files (rows store image paths only).

Usage:
    python benchmarks/datasets.py                       # 5k, 10k, 20k images x 8 boxes (20k -> 160k boxes)
    python benchmarks/datasets.py --sizes 20000 --boxes-per-image 8 --workdir /tmp/bench
    python benchmarks/datasets.py --header-only         # decode_images=False: image headers only
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time


# This file is named like the `datasets` package: keep its folder off the import path when run as a script
# (`datasets` and `trl_perception` are imported inside the functions, after this).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def _peak_rss_mib() -> float:
    """Peak RSS of this process. VmHWM resets at exec; ru_maxrss would include the parent's RSS at fork time."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(root: str, cache: str, decode: str = "1") -> None:
    """Run one build and print a JSON line with its measurements."""
    import datasets

    from trl_perception.data import CocoDetection

    datasets.disable_progress_bars()
    baseline_mib = _peak_rss_mib()
    start = time.perf_counter()
    builder = CocoDetection(data_dir=root, splits=("train",), cache_dir=cache, decode_images=decode == "1")
    builder.download_and_prepare()
    build_s = time.perf_counter() - start
    peak_mib = _peak_rss_mib()
    ds = builder.as_dataset("train")
    stored = ds.cast_column("image", datasets.Image(decode=False))[0]["image"]
    cache_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(builder.cache_dir) for f in fs)
    print(
        json.dumps(
            {
                "rows": len(ds),
                "boxes": sum(len(b) for b in ds["category_ids"]),
                "build_s": build_s,
                "peak_rss_mib": peak_mib,
                "baseline_rss_mib": baseline_mib,
                "image_bytes_in_arrow": stored["bytes"] is not None,
                "arrow_cache_mib": cache_bytes / 2**20,
                "skips": builder.report.total_skips(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,10000,20000", help="comma-separated numbers of images")
    parser.add_argument("--boxes-per-image", type=int, default=8)
    parser.add_argument("--workdir", default=None, help="where to write fixtures (default: a temp dir, removed)")
    parser.add_argument(
        "--header-only", action="store_true", help="decode_images=False: read image headers only (no full decode)"
    )
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        _child(*args._child)
        return

    from PIL import Image

    from trl_perception.data.fixtures import write_coco_scale_fixture

    # A ~20 KB noise JPEG, so the image files clearly outweigh anything the builder should keep in memory.
    rng = random.Random(0)
    buf = io.BytesIO()
    Image.frombytes("RGB", (160, 120), bytes(rng.randrange(256) for _ in range(160 * 120 * 3))).save(buf, "JPEG")
    image_bytes = buf.getvalue()

    workdir = args.workdir or tempfile.mkdtemp(prefix="trl_perception_bench_")
    results = []
    try:
        for n in [int(s) for s in args.sizes.split(",")]:
            root = os.path.join(workdir, f"coco_{n}")
            t0 = time.perf_counter()
            fx = write_coco_scale_fixture(root, n, args.boxes_per_image, image_bytes=image_bytes)
            gen_s = time.perf_counter() - t0
            ann_mib = os.path.getsize(fx["annotation_file"]) / 2**20
            out = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--_child",
                    root,
                    os.path.join(workdir, f"cache_{n}"),
                    "0" if args.header_only else "1",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            r.update(images=n, annotation_mib=ann_mib, image_files_mib=n * len(image_bytes) / 2**20, gen_s=gen_s)
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        "| images | boxes | annotation MiB | image files MiB | build s | µs/box | peak RSS MiB | RSS over imports MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        over = r["peak_rss_mib"] - r["baseline_rss_mib"]
        print(
            f"| {r['images']} | {r['boxes']} | {r['annotation_mib']:.1f} | {r['image_files_mib']:.0f} | "
            f"{r['build_s']:.2f} | {1e6 * r['build_s'] / r['boxes']:.1f} | {r['peak_rss_mib']:.0f} | {over:.0f} |"
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        scale = b["boxes"] / a["boxes"]
        print(
            f"\nx{scale:.1f} boxes -> x{b['build_s'] / a['build_s']:.2f} build time, "
            f"x{(b['peak_rss_mib'] - b['baseline_rss_mib']) / (a['peak_rss_mib'] - a['baseline_rss_mib']):.2f} "
            "RSS over imports"
        )
    assert all(not r["image_bytes_in_arrow"] for r in results), "image bytes were embedded in the Arrow cache"


if __name__ == "__main__":
    main()

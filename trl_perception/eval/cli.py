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
"""``trl-perception eval``: evaluate a model on a perception benchmark and write a run directory.

```bash
trl-perception eval --task grounding --model Kangheng/PR1-Qwen2-VL-2B-Grounding \\
    --dataset refcoco --data-dir refer/data/refcoco --image-dir coco/train2014 --split val --backend vllm
trl-perception eval --task detection --model ./my-checkpoint --dataset coco_detection --data-dir /data/coco \\
    --split validation --limit 50
trl-perception eval --task ocr --model ./ckpt --dataset ./saved_fox_dataset --split test --fox-order
```

``--dataset`` is a builder name (`DATASET_LOADERS`) or a directory written by `datasets.Dataset.save_to_disk`.
vllm is imported only for ``--backend vllm``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from trl_perception.eval.runner import EVAL_TASKS, TASK_DEFAULTS, EvalConfig, evaluate, resolve_frame
from trl_perception.eval.scoring import COUNT_MODES
from trl_perception.families import resolve_family


def _loaders() -> dict[str, Callable[..., Any]]:
    from trl_perception import data
    from trl_perception.data.synthetic import load_synthetic_shapes

    return {
        "refcoco": data.load_refcoco,
        "refcoco+": partial(data.load_refcoco, dataset="refcoco+"),
        "refcocog": partial(data.load_refcoco, dataset="refcocog"),
        "pixmo_count": data.load_pixmo_count,
        "page_ocr": data.load_page_ocr,
        "page_ocr_zh": partial(data.load_page_ocr, language="zh"),
        "coco_detection": data.load_coco_detection,
        "synthetic_shapes": load_synthetic_shapes,
    }


DATASET_LOADERS = (
    "refcoco",
    "refcoco+",
    "refcocog",
    "pixmo_count",
    "page_ocr",
    "page_ocr_zh",
    "coco_detection",
    "synthetic_shapes",
)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_eval_dataset(
    spec: str,
    task: str,
    split: str | None = None,
    family: str | None = None,
    **options: Any,
):
    """Load the rows to evaluate: a saved dataset directory, or a builder from `DATASET_LOADERS`.

    ``options`` (``data_dir``, ``image_dir``, ``annotation_file``, ``cache_dir``, other builder fields) go to the
    builder's ``load_*`` function; ``None`` values are dropped. ``family`` selects the prompt's model family.
    """
    import datasets

    options = {k: v for k, v in options.items() if v is not None}
    if os.path.isdir(spec) and any(
        os.path.isfile(os.path.join(spec, name)) for name in ("dataset_info.json", "dataset_dict.json", "state.json")
    ):
        loaded = datasets.load_from_disk(spec)
    elif spec in DATASET_LOADERS:
        kwargs = dict(options)
        if family is not None:
            kwargs.setdefault("family", family)
        if spec == "synthetic_shapes":
            kwargs.pop("family", None)  # synthetic prompts are family-independent
            kwargs.setdefault("task", task)
        elif split is not None:
            kwargs["split"] = split
        loaded = _loaders()[spec](**kwargs)
    else:
        raise ValueError(
            f"--dataset {spec!r} is neither a saved dataset directory nor a builder; builders: {list(DATASET_LOADERS)}."
        )
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            if len(loaded) != 1:
                raise ValueError(f"The dataset has splits {list(loaded)}; choose one with --split.")
            split = next(iter(loaded))
        if split not in loaded:
            raise ValueError(f"Split {split!r} not found; available: {list(loaded)}.")
        loaded = loaded[split]
    return loaded


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


# Samples per `backend.generate` call. vLLM batches requests itself, so small calls only leave it idle while the longest
# completion of each call finishes: with 8 rows per call, greedy evaluation ran at a third of the tokens/s of one call
# over the same 32 rows (benchmarks/rollouts.py, docs/performance.md).
DEFAULT_BATCH_SIZES = {"hf": 8, "vllm": 256}


def build_parser() -> argparse.ArgumentParser:
    """The ``eval`` argument parser (also used by ``trl-perception eval --help``)."""
    p = argparse.ArgumentParser(
        prog="trl-perception eval",
        description="Evaluate a vision-language model on grounding, counting, OCR or detection with the paper's metrics.",
    )
    p.add_argument("--task", required=True, choices=EVAL_TASKS)
    p.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    p.add_argument("--dataset", required=True, help=f"builder name ({', '.join(DATASET_LOADERS)}) or a saved dataset")
    p.add_argument("--split", default=None, help="dataset split (default: the builder's evaluation split)")
    p.add_argument("--backend", default="hf", choices=("hf", "vllm"))
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"samples per generation call (default: {DEFAULT_BATCH_SIZES['hf']} for hf, "
        f"{DEFAULT_BATCH_SIZES['vllm']} for vllm, whose scheduler keeps its own batch full)",
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N rows")
    p.add_argument(
        "--max-new-tokens", type=int, default=None, help="default: 512 grounding/counting, 2048 OCR, 4096 det"
    )
    p.add_argument("--output-dir", default=None, help="run directory (default: eval_runs/<task>-<dataset>-<time>)")
    p.add_argument(
        "--family",
        default="auto",
        help="model family (trl_perception.families): prompts in its syntax, boxes in its frame; auto: from "
        "config.model_type",
    )
    p.add_argument(
        "--frame",
        default="auto",
        help="box frame of the model: auto (from its family), grid_1000, resized, original, normalized, or a family name",
    )
    p.add_argument("--min-pixels", type=int, default=None, help="processor pixel budget (default: the checkpoint's)")
    p.add_argument("--max-pixels", type=int, default=None)
    p.add_argument(
        "--skip-special-tokens",
        choices=("auto", "true", "false"),
        default="auto",
        help="decode without special tokens (auto: false for grounding/counting, true for OCR/detection, as PR1)",
    )
    p.add_argument(
        "--repetition-penalty",
        type=float,
        default=1.0,
        help="1.0 = plain greedy (default); the paper's grounding evaluation used 1.05",
    )
    p.add_argument(
        "--chat-template-kwargs",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="chat template options, as in training, e.g. '{\"enable_thinking\": false}' (Qwen3.5 without thinking)",
    )
    # Dataset builder options.
    p.add_argument("--data-dir", default=None)
    p.add_argument("--image-dir", default=None)
    p.add_argument("--annotation-file", default=None)
    p.add_argument("--cache-dir", default=None, help="datasets cache for builders")
    p.add_argument(
        "--builder-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra builder option (JSON value or string), e.g. prompt_preset=released; repeatable",
    )
    # Task options.
    p.add_argument("--count-mode", default="auto", choices=COUNT_MODES)
    p.add_argument(
        "--out-of-image",
        default="keep",
        choices=("keep", "clip", "reject"),
        help="boxes outside the image: keep (paper), clip (rewards' default) or reject",
    )
    p.add_argument("--fox-order", action="store_true", help="OCR: Fox/GOT's swapped precision/recall/BLEU/METEOR")
    p.add_argument("--coco-gt", default=None, help="detection: COCO instances JSON (default: the builder's)")
    p.add_argument("--num-visualizations", type=int, default=8)
    p.add_argument("--no-progress", action="store_true")
    # Backend options.
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default=None, help="hf backend device (default: cuda if available)")
    p.add_argument("--max-model-len", type=int, default=8192, help="vllm context length")
    p.add_argument("--gpu-memory-utilization", type=float, default=None, help="vllm memory fraction")
    p.add_argument("--kv-cache-memory-bytes", type=int, default=None, help="vllm KV-cache size (CPU default 512 MiB)")
    p.add_argument("--no-enforce-eager", action="store_true", help="vllm: allow CUDA graphs")
    return p


def _builder_args(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--builder-arg expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run ``trl-perception eval``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    from trl_perception.eval.backends import make_backend

    if args.family != "auto" or args.frame == "auto":
        spec = resolve_family(args.family, model=args.model)  # raises, listing the registered families
        family = spec.name
        frame = spec.box_frame if args.frame == "auto" else resolve_frame(args.model, args.frame)
    else:  # an explicit frame: the prompt is still written for the model's family, when it is a registered one
        frame = resolve_frame(args.model, args.frame)
        try:
            family = resolve_family("auto", model=args.model).name
        except ValueError:
            family = None
    dataset = load_eval_dataset(
        args.dataset,
        args.task,
        split=args.split,
        family=family,
        data_dir=args.data_dir,
        image_dir=args.image_dir,
        annotation_file=args.annotation_file,
        cache_dir=args.cache_dir,
        **_builder_args(args.builder_arg),
    )
    defaults = TASK_DEFAULTS[args.task]
    skip_special = (
        defaults["skip_special_tokens"] if args.skip_special_tokens == "auto" else args.skip_special_tokens == "true"
    )
    backend_kwargs: dict[str, Any] = {
        "max_new_tokens": args.max_new_tokens or defaults["max_new_tokens"],
        "skip_special_tokens": skip_special,
        "min_pixels": args.min_pixels,
        "max_pixels": args.max_pixels,
        "dtype": args.dtype,
        "repetition_penalty": args.repetition_penalty,
        "chat_template_kwargs": args.chat_template_kwargs,
    }
    if args.backend == "hf":
        backend_kwargs["device"] = args.device
    else:
        backend_kwargs.update(
            max_model_len=args.max_model_len,
            gpu_memory_utilization=args.gpu_memory_utilization,
            kv_cache_memory_bytes=args.kv_cache_memory_bytes,
            enforce_eager=not args.no_enforce_eager,
        )
    backend = make_backend(args.backend, args.model, **backend_kwargs)

    dataset_name = os.path.basename(os.path.normpath(args.dataset))
    output_dir = args.output_dir or os.path.join(
        "eval_runs", f"{args.task}-{dataset_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    config = EvalConfig(
        task=args.task,
        output_dir=output_dir,
        frame=frame,
        family=family,
        batch_size=args.batch_size or DEFAULT_BATCH_SIZES[args.backend],
        limit=args.limit,
        count_mode=args.count_mode,
        out_of_image=args.out_of_image,
        fox_order=args.fox_order,
        coco_gt=args.coco_gt,
        num_visualizations=args.num_visualizations,
        progress=not args.no_progress,
        run_info={
            "model": args.model,
            "family": family,
            "dataset": args.dataset,
            "split": args.split or (str(dataset.split) if dataset.split is not None else None),
            "backend": args.backend,
            "backend_kwargs": backend_kwargs,
            "argv": argv,
        },
    )
    result = evaluate(dataset, config, backend)
    print((result.output_dir / "results.md").read_text(encoding="utf-8"))
    print(f"Run directory: {result.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

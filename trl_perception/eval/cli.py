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
"""``trl-perception eval``: evaluate a model on the held-out split of a training recipe, or on any benchmark split,
and write a run directory.

```bash
trl-perception eval --config quickstart                   # the recipe's output_dir on its test split
trl-perception eval --config quickstart --model_name_or_path tiny:qwen2_5_vl   # the untrained start, same data
trl-perception eval --config grounding_refcoco --dataset_kwargs '{"data_dir": "/data/refcoco"}' --backend vllm
trl-perception eval --model_name_or_path Kangheng/PR1-Qwen2-VL-2B-Grounding --dataset_name refcoco \\
    --dataset_kwargs '{"data_dir": "refer/data/refcoco", "image_dir": "coco/train2014"}' --dataset_test_split testA
```

The flags are the training script's (`--model_name_or_path`, `--dataset_name`, `--dataset_config`,
`--dataset_kwargs`, `--dataset_test_split`, `--model_family`, `--min_pixels`, `--max_pixels`,
`--chat_template_kwargs`, `--dtype`, `--output_dir`), and `--config` reads the same recipe: the command line overrides
it, and `--dataset_kwargs` merges with the recipe's dict (a key set to `null` removes it). The earlier names
(`--model`, `--dataset`, `--split`, `--family`, `--data-dir`, `--image-dir`, `--annotation-file`, `--cache-dir`,
`--builder-arg`, and the dashed spellings of the other flags) still work. vllm is imported only for
``--backend vllm``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl_perception.eval.runner import EvalConfig, evaluate, resolve_frame
from trl_perception.eval.scoring import COUNT_MODES
from trl_perception.eval.tasks import get_eval_task, list_eval_tasks
from trl_perception.families import resolve_family


# Earlier builder names, each a builder of `trl-perception train` with its `dataset_config`.
BUILDER_ALIASES = {
    "refcoco+": ("refcoco", "refcoco+"),
    "refcocog": ("refcoco", "refcocog"),
    "page_ocr_zh": ("page_ocr", "zh"),
}
_OLD_DATASET_FLAGS = {"data_dir": "--data-dir", "image_dir": "--image-dir", "annotation_file": "--annotation-file",
                      "cache_dir": "--cache-dir"}  # fmt: skip


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# Samples per `backend.generate` call. vLLM batches requests itself, so small calls only leave it idle while the longest
# completion of each call finishes: with 8 rows per call, greedy evaluation ran at a third of the tokens/s of one call
# over the same 32 rows (benchmarks/rollouts.py, docs/performance.md).
DEFAULT_BATCH_SIZES = {"hf": 8, "vllm": 256}


def build_parser() -> argparse.ArgumentParser:
    """The ``eval`` argument parser (also used by ``trl-perception eval --help``)."""
    from trl_perception.scripts.train import BUILDERS

    p = argparse.ArgumentParser(
        prog="trl-perception eval",
        description="Evaluate a vision-language model with the paper's metrics (grounding, counting, OCR, detection, "
        "or a task registered with register_eval_task). With --config, the data is the training recipe's held-out "
        "split and the model its output_dir.",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Builders: " + ", ".join([*BUILDERS, *BUILDER_ALIASES]) + "; or a `save_to_disk` directory, or a Hub "
        "id.\nDefault split: the recipe's dataset_test_split, else the builder's evaluation split (refcoco val, "
        "pixmo_count validation,\npage_ocr test, coco_detection validation, synthetic_shapes test).\n"
        "Without a recipe, synthetic_shapes counting uses the quickstart recipe's dataset_kwargs (the quickstart's "
        "data).\nExample: trl-perception eval --config quickstart --limit 50",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="RECIPE",
        help="a training recipe (YAML file or shipped name, as `train --config`)",
    )
    p.add_argument(
        "--task",
        default=None,
        help=f"registered evaluation task ({', '.join(list_eval_tasks())}, or your own); default: the dataset's task",
    )
    p.add_argument(
        "--task_modules",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="modules to import first (they may register eval tasks and rewards); the recipe's "
        "reward_modules are imported too",
    )
    p.add_argument(
        "--model_name_or_path",
        "--model",
        default=None,
        help="checkpoint directory, Hub id or tiny:<family>; default with --config: the recipe's "
        "output_dir (the trained model)",
    )
    p.add_argument(
        "--dataset_name",
        "--dataset",
        default=None,
        help="builder name, `save_to_disk` directory or Hub id (default with --config: the recipe's)",
    )
    p.add_argument(
        "--dataset_config",
        default=None,
        help="builder config (synthetic_shapes: the task; refcoco: refcoco|refcoco+|refcocog; page_ocr: en|zh)",
    )
    p.add_argument(
        "--dataset_kwargs",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="builder keyword arguments; merge with the recipe's (a key set to null removes it)",
    )
    p.add_argument(
        "--dataset_test_split",
        "--split",
        default=None,
        help="split to evaluate (default: the recipe's dataset_test_split, else the builder's)",
    )
    p.add_argument("--backend", default="hf", choices=("hf", "vllm"))
    p.add_argument(
        "--batch_size",
        "--batch-size",
        type=int,
        default=None,
        help=f"samples per generation call (default: {DEFAULT_BATCH_SIZES['hf']} for hf, "
        f"{DEFAULT_BATCH_SIZES['vllm']} for vllm, whose scheduler keeps its own batch full)",
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N rows")
    p.add_argument(
        "--max_new_tokens",
        "--max-new-tokens",
        type=int,
        default=None,
        help="default: the task's (512 grounding/counting, 2048 OCR, 4096 detection)",
    )
    p.add_argument(
        "--output_dir", "--output-dir", default=None, help="run directory (default: eval_runs/<task>-<dataset>-<time>)"
    )
    p.add_argument(
        "--model_family",
        "--family",
        default=None,
        help="model family (trl_perception.families): prompts in its syntax, boxes in its frame; auto "
        "(default): from config.model_type",
    )
    p.add_argument(
        "--frame",
        default="auto",
        help="box frame of the model: auto (from its family), grid_1000, resized, original, normalized, or "
        "a family name",
    )
    p.add_argument(
        "--min_pixels",
        "--min-pixels",
        type=int,
        default=None,
        help="processor pixel budget (default: the recipe's, else the checkpoint's)",
    )
    p.add_argument("--max_pixels", "--max-pixels", type=int, default=None)
    p.add_argument(
        "--skip_special_tokens",
        "--skip-special-tokens",
        choices=("auto", "true", "false"),
        default="auto",
        help="decode without special tokens (auto: the task's; false for grounding/"
        "counting, true for OCR/detection, as PR1)",
    )
    p.add_argument(
        "--repetition_penalty",
        "--repetition-penalty",
        type=float,
        default=1.0,
        help="1.0 = plain greedy (default); the paper's grounding evaluation used 1.05",
    )
    p.add_argument(
        "--chat_template_kwargs",
        "--chat-template-kwargs",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="chat template options (default: the recipe's), e.g. "
        "'{\"enable_thinking\": false}' (Qwen3.5 without thinking)",
    )
    # Task options.
    p.add_argument("--count_mode", "--count-mode", default="auto", choices=COUNT_MODES)
    p.add_argument(
        "--out_of_image",
        "--out-of-image",
        default="keep",
        choices=("keep", "clip", "reject"),
        help="boxes outside the image: keep (paper), clip (rewards' default) or reject",
    )
    p.add_argument(
        "--fox_order", "--fox-order", action="store_true", help="OCR: Fox/GOT's swapped precision/recall/BLEU/METEOR"
    )
    p.add_argument(
        "--coco_gt", "--coco-gt", default=None, help="detection: COCO instances JSON (default: the builder's)"
    )
    p.add_argument("--num_visualizations", "--num-visualizations", type=int, default=8)
    p.add_argument("--no_progress", "--no-progress", action="store_true")
    # Backend options.
    p.add_argument("--dtype", default=None, help="model dtype (default: the recipe's, else auto)")
    p.add_argument("--device", default=None, help="hf backend device (default: cuda if available)")
    p.add_argument("--max_model_len", "--max-model-len", type=int, default=8192, help="vllm context length")
    p.add_argument(
        "--gpu_memory_utilization", "--gpu-memory-utilization", type=float, default=None, help="vllm memory fraction"
    )
    p.add_argument(
        "--kv_cache_memory_bytes",
        "--kv-cache-memory-bytes",
        type=int,
        default=None,
        help="vllm KV-cache size (CPU default 512 MiB)",
    )
    p.add_argument("--no_enforce_eager", "--no-enforce-eager", action="store_true", help="vllm: allow CUDA graphs")
    # The earlier dataset flags: entries of --dataset_kwargs.
    old = p.add_argument_group("earlier dataset flags (entries of --dataset_kwargs)")
    for key, flag in _OLD_DATASET_FLAGS.items():
        old.add_argument(flag, dest=f"old_{key}", default=None, help=f"--dataset_kwargs '{{\"{key}\": ...}}'")
    old.add_argument(
        "--builder-arg",
        dest="builder_arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one --dataset_kwargs entry (JSON value or string); repeatable",
    )
    return p  # fmt: skip


@dataclass
class EvalPlan:
    """What `trl-perception eval` will do, resolved from the flags and the recipe before any model or data is loaded
    (see `resolve_plan`)."""

    model: str
    dataset_name: str
    dataset_config: str | None
    dataset_kwargs: dict[str, Any]
    split: str | None
    task: str | None
    model_family: str
    dtype: str
    min_pixels: int | None
    max_pixels: int | None
    chat_template_kwargs: dict[str, Any] | None
    seed: int = 0
    recipe: str | None = None
    recipe_values: dict[str, Any] = field(default_factory=dict)


def _load_recipe(value: str) -> tuple[str, dict[str, Any]]:
    import yaml

    from trl_perception.shipped_recipes import recipe_path

    path = recipe_path(value)
    with open(path, encoding="utf-8") as f:
        recipe = yaml.safe_load(f) or {}
    if not isinstance(recipe, dict):
        raise ValueError(f"--config {value!r}: a recipe is a YAML mapping of flags to values.")
    return path, recipe


def quickstart_dataset_kwargs() -> dict[str, Any]:
    """The quickstart recipe's `dataset_kwargs`: eval's defaults for synthetic_shapes counting without a recipe, read
    from the shipped recipe so that the two cannot drift apart."""
    from trl_perception.shipped_recipes import recipe_path

    _, recipe = _load_recipe(recipe_path("quickstart"))
    return dict(recipe.get("dataset_kwargs") or {})


def _has_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def resolve_plan(args: argparse.Namespace) -> EvalPlan:
    """Resolve the model, dataset, split, task and processor options from the flags and the recipe (`--config`),
    importing `--task_modules` and the recipe's `reward_modules`; validates the dataset arguments as training does.
    Raises a `ValueError` / `FileNotFoundError` naming the fix."""
    from trl_perception.scripts.train import (
        _BUILDER_TASKS,  # the task each builder's rows have (synthetic_shapes: its `dataset_config`)
        default_test_split,
        import_reward_modules,
        merge_dicts,
        validate_dataset,
    )

    recipe_file, recipe = _load_recipe(args.config) if args.config else (None, {})
    import_reward_modules([*args.task_modules, *(recipe.get("reward_modules") or [])])

    model = args.model_name_or_path
    if model is None:
        if recipe_file is None:
            raise ValueError("Give the model: --model_name_or_path PATH (or --config RECIPE, whose output_dir it is).")
        output_dir = str(recipe.get("output_dir") or "trainer_output")
        if not _has_saved_model(output_dir):
            raise ValueError(
                f"The recipe's output_dir {output_dir!r} holds no trained model yet (no config.json): train it first "
                f"(`trl-perception train --config {args.config}`), or name the model with --model_name_or_path "
                f"(e.g. the recipe's starting model {recipe.get('model_name_or_path')!r})."
            )
        model = output_dir

    name = args.dataset_name or recipe.get("dataset_name")
    if not name:
        raise ValueError(
            "Give the data: --dataset_name (a builder, a `save_to_disk` directory or a Hub id), or --config."
        )
    config = args.dataset_config if args.dataset_config is not None else recipe.get("dataset_config")
    if name in BUILDER_ALIASES:
        name, alias_config = BUILDER_ALIASES[name]
        config = config if config is not None else alias_config
    if name == "synthetic_shapes" and config is None and args.task in ("counting", "grounding"):
        config = args.task

    if recipe_file is not None:
        base = dict(recipe.get("dataset_kwargs") or {})
    elif name == "synthetic_shapes" and (config or "counting") == "counting":
        base = quickstart_dataset_kwargs()
    else:
        base = {}
    if isinstance(base, str):
        base = json.loads(base)
    kwargs = merge_dicts(base, args.dataset_kwargs or {})
    old = {key: getattr(args, f"old_{key}") for key in _OLD_DATASET_FLAGS}
    kwargs = merge_dicts(kwargs, {k: v for k, v in old.items() if v is not None})
    for item in args.builder_arg:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--builder-arg expects KEY=VALUE, got {item!r}.")
        kwargs[key.strip()] = _parse_value(value)

    split = args.dataset_test_split or recipe.get("dataset_test_split")
    saved = os.path.isdir(name)
    if split is None and not saved:
        split = default_test_split(name)
    validate_dataset(name, config, kwargs, [split] if split is not None else [])

    task = args.task
    if task is None:
        task = (config or "counting") if name == "synthetic_shapes" else _BUILDER_TASKS.get(name)
    if task is not None:
        get_eval_task(task)  # raises, listing the registered tasks

    return EvalPlan(
        model=model,
        dataset_name=name,
        dataset_config=config,
        dataset_kwargs=kwargs,
        split=split,
        task=task,
        model_family=args.model_family or recipe.get("model_family") or "auto",
        dtype=args.dtype or recipe.get("dtype") or "auto",
        min_pixels=args.min_pixels if args.min_pixels is not None else recipe.get("min_pixels"),
        max_pixels=args.max_pixels if args.max_pixels is not None else recipe.get("max_pixels"),
        chat_template_kwargs=args.chat_template_kwargs
        if args.chat_template_kwargs is not None
        else recipe.get("chat_template_kwargs"),
        seed=int(recipe.get("seed", 0) or 0),
        recipe=recipe_file,
        recipe_values=recipe,
    )


def load_eval_dataset(
    name: str, split: str | None = None, config: str | None = None, family: str | None = None, **kwargs: Any
):
    """The rows to evaluate, loaded as training loads its test split (`trl_perception.scripts.train`
    `load_perception_dataset`): a builder with ``kwargs`` and prompts for ``family``, a `save_to_disk` directory
    (``split`` ``None``: its only split, or ``test``), or a Hub dataset."""
    import datasets

    from trl_perception.scripts.train import load_perception_dataset

    if os.path.isdir(name):
        loaded = datasets.load_from_disk(name)
        if isinstance(loaded, datasets.DatasetDict):
            if split is None:
                split = next(iter(loaded)) if len(loaded) == 1 else "test"
            if split not in loaded:
                raise ValueError(
                    f"Split {split!r} not found in {name}; choose one of {list(loaded)} with --dataset_test_split."
                )
            loaded = loaded[split]
        return loaded
    return load_perception_dataset(name, split, config, default_family=family, **kwargs)


def _dataset_task(dataset) -> str:
    tasks = sorted(set(dataset["task"])) if "task" in dataset.column_names else []
    if len(tasks) != 1:
        found = f"tasks {tasks}" if tasks else "no `task` column"
        raise ValueError(f"The dataset has {found}; choose the task with --task ({', '.join(list_eval_tasks())}).")
    get_eval_task(tasks[0])
    return tasks[0]


def main(argv: list[str] | None = None) -> int:
    """Run ``trl-perception eval``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        plan = resolve_plan(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"trl-perception eval: error: {e}", file=sys.stderr)
        return 2
    scratch = None
    try:
        model = plan.model
        if model.startswith("tiny:"):  # the offline tiny model training starts from (same seed: same weights)
            from trl_perception.testing import build_tiny_model

            scratch = tempfile.mkdtemp(prefix="trl-perception-eval-")
            model = str(build_tiny_model(Path(scratch) / "model", arch=model.split(":", 1)[1], seed=plan.seed))
        return _run(args, plan, model, argv)
    except (ValueError, FileNotFoundError) as e:
        print(f"trl-perception eval: error: {e}", file=sys.stderr)
        return 2
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(args: argparse.Namespace, plan: EvalPlan, model: str, argv: list[str] | None) -> int:
    from trl_perception.eval.backends import make_backend

    if plan.model_family != "auto" or args.frame == "auto":
        spec = resolve_family(plan.model_family, model=model)  # raises, listing the registered families
        family = spec.name
        frame = spec.box_frame if args.frame == "auto" else resolve_frame(model, args.frame)
    else:  # an explicit frame: the prompt is still written for the model's family, when it is a registered one
        frame = resolve_frame(model, args.frame)
        try:
            family = resolve_family("auto", model=model).name
        except ValueError:
            family = None
    dataset = load_eval_dataset(
        plan.dataset_name, plan.split, plan.dataset_config, family=family, **plan.dataset_kwargs
    )
    task_name = plan.task or _dataset_task(dataset)
    task = get_eval_task(task_name)
    skip_special = (
        task.skip_special_tokens if args.skip_special_tokens == "auto" else args.skip_special_tokens == "true"
    )
    backend_kwargs: dict[str, Any] = {
        "max_new_tokens": args.max_new_tokens or task.max_new_tokens,
        "skip_special_tokens": skip_special,
        "min_pixels": plan.min_pixels,
        "max_pixels": plan.max_pixels,
        "dtype": plan.dtype,
        "repetition_penalty": args.repetition_penalty,
        "chat_template_kwargs": plan.chat_template_kwargs,
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
    backend = make_backend(args.backend, model, **backend_kwargs)

    dataset_label = os.path.basename(os.path.normpath(plan.dataset_name))
    output_dir = args.output_dir or os.path.join(
        "eval_runs", f"{task_name}-{dataset_label}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    split = plan.split or (str(dataset.split) if dataset.split is not None else None)
    config = EvalConfig(
        task=task_name,
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
            "model": plan.model,
            "family": family,
            "dataset": plan.dataset_name,
            "dataset_config": plan.dataset_config,
            "dataset_kwargs": plan.dataset_kwargs,
            "split": split,
            "recipe": plan.recipe,
            "backend": args.backend,
            "backend_kwargs": backend_kwargs,
            "argv": list(sys.argv[1:]) if argv is None else list(argv),
        },
    )
    result = evaluate(dataset, config, backend)
    print((result.output_dir / "results.md").read_text(encoding="utf-8"))
    print(f"Run directory: {result.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

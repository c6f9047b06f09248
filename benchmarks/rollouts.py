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
"""Rollout and evaluation generation measured against raw vLLM (the limit), on the same engine and prompts.

Rollouts (GRPO sampling, temperature 1.0, `ignore_eos` / `min_new_tokens` so that every path generates exactly
`--max-tokens` tokens per rollout), generated tokens/s of:

- (a) raw `vllm.LLM.generate` with `multi_modal_data` (one placeholder per image, the same requests the trainer sends:
  each prompt repeated `num_generations` times, `n=1`); (a') the same prompts once each with `n=num_generations`;
- (b) `PerceptionGRPOTrainer._generate_single_turn` on the vLLM colocate engine, every check on (prompt parity,
  vision-token ban, logprobs for importance sampling);
- (c) the same with `check_vllm_prompts=False`;
- (d) transformers `generate` through the trainer (`use_vllm=False`).

(a), (b) and (c) use the same engine (the trainer's), interleaved, with fresh images on every repeat so that neither
vLLM's prefix cache nor its encoder cache carries over between measurements. The prompts are the four tasks'
(`trl_perception.prompts.build_prompt`) with one or two images of mixed sizes (below, inside and above the pixel
budget). The trainer's own processor pass (`_tokenize_prompts`, which training needs for the loss anyway) runs before
generation and is reported on its own line.

Evaluation (greedy): `trl_perception.eval.evaluate` with the `vllm` backend (what `trl-perception eval --backend
vllm` runs: templating, generation, parsing, scoring, the run directory) versus raw `llm.generate` of the same requests
on the backend's engine, on synthetic grounding rows from the data builder.

Models: random-init offline checkpoints of `trl_perception.testing` (`--sizes tiny,small`; "small" is a 76 M-parameter
Qwen2.5-VL whose decoding dominates vLLM's per-request overhead on CPU).

Usage:

```bash
python benchmarks/rollouts.py                     # tiny + small, rollouts and eval (the small model's part
                                                  # took over 15 min on 2 heavily shared cores)
python benchmarks/rollouts.py --quick             # tiny only, fewer tokens (under 3 min)
python benchmarks/rollouts.py --profile           # also cProfile the trainer path (b) of the last size
```
"""

import argparse
import builtins
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time


# Running `python benchmarks/rollouts.py` puts benchmarks/ first on sys.path, where sibling scripts (e.g.
# benchmarks/datasets.py) would shadow the libraries of the same name.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np


def print(*args, **kwargs):  # noqa: A001 (progress is read while the benchmark runs, also through a pipe)
    builtins.print(*args, **kwargs, flush=True)


# (width, height): below, inside and above the pixel budget, odd aspect ratios included.
IMAGE_SIZES = [(64, 48), (300, 200), (97, 131), (56, 56), (200, 90), (20, 30), (160, 160), (420, 120)]
TASK_SLOTS = {
    "grounding": {"question": "the red circle"},
    "counting": {"question": "shapes"},
    "ocr": {},
    "detection": {"categories": "person, car, dog"},
}


def make_prompts(num_prompts: int, family: str, seed: int):
    """Conversational prompts of the four tasks, 1 or 2 images each (every third prompt has 2), fresh pixels."""
    from PIL import Image
    from trl.data_utils import prepare_multimodal_messages

    from trl_perception.prompts import build_prompt

    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(num_prompts):
        task = list(TASK_SLOTS)[i % len(TASK_SLOTS)]
        count = 2 if i % 3 == 1 else 1
        sizes = [IMAGE_SIZES[(i + k * 3) % len(IMAGE_SIZES)] for k in range(count)]
        images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
        prompts.append(prepare_multimodal_messages(build_prompt(task, family=family, **TASK_SLOTS[task]), images))
    return prompts


def _config(workdir, name, cli, **extra):
    from trl_perception import PerceptionGRPOConfig

    return PerceptionGRPOConfig(
        output_dir=f"{workdir}/{name}",
        per_device_train_batch_size=cli.prompts * cli.generations,
        num_generations=cli.generations,
        max_completion_length=cli.max_tokens,
        temperature=1.0,
        max_steps=1,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        seed=0,
        **extra,
    )


def _dataset(prompts):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [[{"role": "user", "content": "?"}]] * len(prompts)})


def _reward(completions, **kwargs):
    return [0.0] * len(completions)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _timed_cpu(fn, *args):
    """`fn()`, its wall time and this process's CPU time (all threads; the engine runs in-process): the CPU time is
    what the path costs, little affected by other jobs sharing the cores, the wall time what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


@contextlib.contextmanager
def _float32_engine():
    """Build TRL's colocated engine in float32: with dtype "auto" vLLM's CPU build runs float32 checkpoints in
    bfloat16, about twice as slow on CPUs without bf16 units. All vLLM paths here share this engine, so the ratios do
    not depend on it."""
    import trl.generation.vllm_generation as trl_vllm_generation

    original = trl_vllm_generation.LLM
    trl_vllm_generation.LLM = functools.partial(original, dtype="float32")
    try:
        yield
    finally:
        trl_vllm_generation.LLM = original


def rollouts(model_path, family, cli, workdir, label):
    from vllm import SamplingParams

    from trl_perception import PerceptionGRPOTrainer
    from trl_perception.vllm_utils import collapse_image_runs

    G = cli.generations
    tokens_per_batch = cli.prompts * G * cli.max_tokens
    args = _config(
        workdir,
        f"vllm-{label}",
        cli,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_max_model_length=1024,
        generation_kwargs={"ignore_eos": True},
    )
    with _float32_engine():
        trainer = PerceptionGRPOTrainer(model_path, _reward, args=args, train_dataset=_dataset(range(4)))
    generation = trainer.vllm_generation
    llm = generation.llm
    image_token_id = trainer.processing_class.image_token_id
    raw_params = SamplingParams(temperature=1.0, max_tokens=cli.max_tokens, ignore_eos=True)
    grouped_params = SamplingParams(temperature=1.0, max_tokens=cli.max_tokens, ignore_eos=True, n=G)

    def batch(seed):
        prompts = make_prompts(cli.prompts, family, seed)
        (ids, images, fields), seconds = _timed(
            lambda: trainer._tokenize_prompts([p for p in prompts for _ in range(G)])
        )
        requests = [
            {"prompt_token_ids": collapse_image_runs(i, image_token_id), "multi_modal_data": {"image": imgs}}
            for i, imgs in zip(ids, images, strict=True)
        ]
        return ids, images, fields, requests, seconds

    def run_raw(requests):
        outputs = llm.generate(requests, raw_params, use_tqdm=False)
        return sum(len(c.token_ids) for o in outputs for c in o.outputs)

    def run_grouped(requests):
        outputs = llm.generate(requests[::G], grouped_params, use_tqdm=False)
        return sum(len(c.token_ids) for o in outputs for c in o.outputs)

    def run_trainer(ids, images, fields, check):
        generation.check_prompts = check
        try:
            completions, _ = trainer._generate_single_turn(ids, images, fields, G)
        finally:
            generation.check_prompts = True
        return sum(len(c) for c in completions)

    # Warm-up: the first generation syncs the weights into the engine; then one batch of each kind.
    ids, images, fields, requests, _ = batch(10_000)
    run_trainer(ids, images, fields, True)
    run_raw(requests)

    runs = [
        lambda s: run_raw(s[3]),
        lambda s: run_grouped(s[3]),
        lambda s: run_trainer(s[0], s[1], s[2], True),
        lambda s: run_trainer(s[0], s[1], s[2], False),
    ]
    names = ["(a) raw vLLM", "(a') raw vLLM, n=G", "(b) trainer, checks on", "(c) trainer, check_vllm_prompts=False"]
    rates = {name: [] for name in names}
    cpu_rates = {name: [] for name in names}
    tokenize = []
    for repeat in range(cli.repeats):
        sets = [batch(100 * repeat + k) for k in range(len(names))]  # fresh images for every measurement
        tokenize += [s[4] for s in sets]
        order = list(range(len(names))) if repeat % 2 == 0 else list(reversed(range(len(names))))
        for k in order:
            tokens, seconds, cpu = _timed_cpu(runs[k], sets[k])
            if tokens != tokens_per_batch:
                raise RuntimeError(f"{names[k]} generated {tokens} tokens, expected {tokens_per_batch}.")
            rates[names[k]].append(tokens / seconds)
            cpu_rates[names[k]].append(tokens / cpu)

    profile = None
    if cli.profile:
        import cProfile
        import pstats

        ids, images, fields, requests, _ = batch(99_999)
        profiler = cProfile.Profile()
        profiler.enable()
        run_trainer(ids, images, fields, True)
        profiler.disable()
        profile = pstats.Stats(profiler)
    generation_settings = {"prompt_lengths": sorted({len(i) for i in ids})}
    medians = {k: statistics.median(v) for k, v in rates.items()}
    cpu_medians = {k: statistics.median(v) for k, v in cpu_rates.items()}
    return medians, cpu_medians, statistics.median(tokenize), generation_settings, profile


def hf_rollouts(model_path, family, cli, workdir, label):
    from trl_perception import PerceptionGRPOTrainer

    G = cli.generations
    args = _config(workdir, f"hf-{label}", cli, generation_kwargs={"min_new_tokens": cli.max_tokens})
    trainer = PerceptionGRPOTrainer(model_path, _reward, args=args, train_dataset=_dataset(range(4)))
    rates = []
    for repeat in range(cli.hf_repeats + 1):
        prompts = make_prompts(cli.prompts, family, 50_000 + repeat)
        ids, images, fields = trainer._tokenize_prompts([p for p in prompts for _ in range(G)])
        completions, seconds, cpu = _timed_cpu(trainer._generate_single_turn, ids, images, fields, G)
        completions = completions[0]
        tokens = sum(len(c) for c in completions)
        if tokens != cli.prompts * G * cli.max_tokens:
            raise RuntimeError(f"transformers generated {tokens} tokens, expected {cli.prompts * G * cli.max_tokens}.")
        if repeat:  # the first call is the warm-up
            rates.append((tokens / seconds, tokens / cpu))
    return statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)


def eval_at_the_limit(model_path, family, cli, workdir, label):
    import datasets

    from trl_perception.data import load_synthetic_shapes
    from trl_perception.eval import EvalConfig, evaluate
    from trl_perception.eval.backends import VLLMBackend, to_multimodal_messages

    parts = [
        load_synthetic_shapes(
            task="grounding",
            num_train=1,
            num_test=cli.eval_rows // 2,
            canvas_width=w,
            canvas_height=h,
            cache_dir=f"{workdir}/data-{w}x{h}",
            seed=s,
        )["test"]
        for s, (w, h) in enumerate([(224, 168), (112, 336)])
    ]
    rows = datasets.concatenate_datasets(parts)
    backend = VLLMBackend(
        model_path, max_new_tokens=cli.max_tokens, skip_special_tokens=False, max_model_len=1024, dtype="float32"
    )
    texts = [
        backend.processor.apply_chat_template(to_multimodal_messages(p), add_generation_prompt=True, tokenize=False)
        for p in rows["prompt"]
    ]
    images = [img.convert("RGB") for img in rows["image"]]
    requests = [{"prompt": t, "multi_modal_data": {"image": img}} for t, img in zip(texts, images, strict=True)]

    def raw(batch_size):
        tokens = 0
        for start in range(0, len(requests), batch_size):
            outputs = backend.llm.generate(
                requests[start : start + batch_size], backend.sampling_params, use_tqdm=False
            )
            tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
        return tokens

    def ours(batch_size, run):
        config = EvalConfig(
            task="grounding", output_dir=f"{workdir}/eval-{label}-{run}", batch_size=batch_size, progress=False
        )
        result = evaluate(rows, config, backend)
        return sum(r["num_completion_tokens"] for r in result.records)

    raw(cli.eval_batch)  # warm-up
    rates = {"raw": [], "eval": [], "raw, all rows in one call": []}
    cpu_rates = {name: [] for name in rates}
    for repeat in range(cli.repeats):
        # Greedy decoding of the same rows: the encoder and prefix caches would make later calls cheaper, so reset.
        for name, fn, fn_args in [
            ("raw", raw, (cli.eval_batch,)),
            ("eval", ours, (cli.eval_batch, repeat)),
            ("raw, all rows in one call", raw, (len(requests),)),
        ]:
            backend.llm.reset_prefix_cache()
            backend.llm.llm_engine.reset_encoder_cache()
            tokens, seconds, cpu = _timed_cpu(fn, *fn_args)
            rates[name].append(tokens / seconds)
            cpu_rates[name].append(tokens / cpu)
    return {k: statistics.median(v) for k, v in rates.items()}, {k: statistics.median(v) for k, v in cpu_rates.items()}


# Per-size settings: enough decoding that the model's work dominates, within minutes on 2 CPU cores.
SIZE_DEFAULTS = {
    "tiny": {"prompts": 8, "max_tokens": 48, "repeats": 3, "eval_rows": 32},
    "small": {"prompts": 4, "max_tokens": 48, "repeats": 2, "eval_rows": 8},
}
QUICK = {"prompts": 8, "max_tokens": 16, "repeats": 1, "eval_rows": 16}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model only, 16 tokens, 1 repeat")
    parser.add_argument("--sizes", default=None, help="comma-separated model sizes (default: tiny,small)")
    parser.add_argument("--arch", default="qwen2_5_vl", help="model family of the offline model")
    parser.add_argument("--prompts", type=int, default=None, help="distinct prompts per batch (tiny 8, small 4)")
    parser.add_argument("--generations", type=int, default=4, help="rollouts per prompt")
    parser.add_argument("--max-tokens", type=int, default=None, help="tokens per rollout (tiny 48, small 48)")
    parser.add_argument("--repeats", type=int, default=None, help="measurements per path (tiny 3, small 2)")
    parser.add_argument("--hf-repeats", type=int, default=1)
    parser.add_argument("--eval-rows", type=int, default=None, help="synthetic grounding rows (tiny 32, small 8)")
    parser.add_argument(
        "--eval-batch", type=int, default=None, help="`trl-perception eval --batch-size` (default: its vllm default)"
    )
    parser.add_argument("--skip-rollouts", action="store_true", help="only the evaluation measurement")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--profile", action="store_true")
    cli = parser.parse_args()
    cli.sizes = (cli.sizes or ("tiny" if cli.quick else "tiny,small")).split(",")
    if cli.eval_batch is None:
        from trl_perception.eval.cli import DEFAULT_BATCH_SIZES

        cli.eval_batch = DEFAULT_BATCH_SIZES["vllm"]

    # On the vLLM CPU build, a fixed KV cache avoids the free-memory check of `gpu_memory_utilization`; one engine
    # process (in-process engine core) keeps the timings free of inter-process transfers on both sides alike.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # One compute thread (vLLM binds it to core 0; transformers then uses it too): on cores shared with other jobs, a
    # second OpenMP thread that is descheduled stalls every parallel region at its barrier (measured here: 3.5x slower
    # single-sequence decoding with two threads under load). Set VLLM_CPU_OMP_THREADS_BIND to override.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")
    from trl_perception.testing import build_tiny_model

    summary, cpu_summary = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for size in cli.sizes:
            defaults = QUICK if cli.quick else SIZE_DEFAULTS.get(size, SIZE_DEFAULTS["small"])
            given = {k: getattr(cli, k) for k in defaults}
            cfg = argparse.Namespace(
                **{**vars(cli), **{k: v if v is not None else defaults[k] for k, v in given.items()}}
            )
            path = build_tiny_model(f"{workdir}/{size}", arch=cli.arch, size=size)
            line, cpu_line = {"size": size}, {"size": size}
            profile = None
            if cli.skip_rollouts:
                print(f"\n== {size} model ({_params(path) / 1e6:.1f} M parameters)")
            else:
                rates, cpu_rates, tokenize_seconds, settings, profile = rollouts(path, cli.arch, cfg, workdir, size)
                print(
                    f"\n== {size} model ({_params(path) / 1e6:.1f} M parameters): {cfg.prompts} prompts x "
                    f"{cfg.generations} rollouts x {cfg.max_tokens} tokens, T=1.0, median of {cfg.repeats}; prompt "
                    f"lengths {settings['prompt_lengths']}"
                )
                for name, rate in rates.items():
                    print(f"{name}: {rate:.0f} tokens/s (wall), {cpu_rates[name]:.0f} tokens per CPU-second")
                print(
                    f"trainer processor pass (_tokenize_prompts, before generation): {tokenize_seconds * 1e3:.0f} ms/batch"
                )
                for out, r in ((line, rates), (cpu_line, cpu_rates)):
                    base = r["(a) raw vLLM"]
                    out["(a')/(a)"] = r["(a') raw vLLM, n=G"] / base
                    out["(b)/(a)"] = r["(b) trainer, checks on"] / base
                    out["(c)/(a)"] = r["(c) trainer, check_vllm_prompts=False"] / base
                if not cli.skip_hf:
                    hf, hf_cpu = hf_rollouts(path, cli.arch, cfg, workdir, size)
                    print(f"(d) trainer, transformers generate: {hf:.0f} tokens/s (wall), {hf_cpu:.0f} per CPU-second")
                    line["(d)/(a)"] = hf / rates["(a) raw vLLM"]
                    cpu_line["(d)/(a)"] = hf_cpu / cpu_rates["(a) raw vLLM"]
            if not cli.skip_eval:
                ev, ev_cpu = eval_at_the_limit(path, cli.arch, cfg, workdir, size)
                for name, rate in ev.items():
                    print(f"eval greedy, {name}: {rate:.0f} tokens/s (wall), {ev_cpu[name]:.0f} per CPU-second")
                for out, r in ((line, ev), (cpu_line, ev_cpu)):
                    out["eval/raw"] = r["eval"] / r["raw"]
                    out["eval/raw (all rows in one call)"] = r["eval"] / r["raw, all rows in one call"]
            summary.append(line)
            cpu_summary.append(cpu_line)
            print("ratios (wall): " + ", ".join(f"{k} = {v:.3f}" for k, v in line.items() if k != "size"))
            print("ratios (CPU): " + ", ".join(f"{k} = {v:.3f}" for k, v in cpu_line.items() if k != "size"))
            if profile is not None:
                print("\ncProfile of one trainer batch (b), by cumulative time:")
                profile.sort_stats("cumulative").print_stats(25)
    print("\n== summary: ratios of tokens/s (wall time; same run, same engine)")
    for line in summary:
        print(f"{line['size']}: " + ", ".join(f"{k} = {v:.3f}" for k, v in line.items() if k != "size"))
    print("== summary: ratios of tokens per CPU-second of this process")
    for line in cpu_summary:
        print(f"{line['size']}: " + ", ".join(f"{k} = {v:.3f}" for k, v in line.items() if k != "size"))


def _params(path):
    from safetensors import safe_open

    total = 0
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
        for key in f.keys():
            total += int(np.prod(f.get_slice(key).get_shape()))
    return total


if __name__ == "__main__":
    main()

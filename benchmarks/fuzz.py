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
"""Push adversarial completions through every reward and report failures and CPU time per completion.

Each of `--n` seeded adversarial completions (`tests/fuzz_corpus.py`: random piece soup, malformed messages, and
5% cap-sized attacks: tag spam, number-dense text, expanding Unicode, combining-mark runs, deep nesting, all up to
the 64 KB input cap) is scored, one completion per call, by every reward variant (every registered reward, its
presets and main options, valid ground truth of its task). Per variant it reports:

- `exc`: exceptions, `nan`: non-finite values, `range`: values outside the documented range (target 0 / 0 / 0);
- p50 / p99 / max CPU time per completion (thread CPU time, robust to other load; targets p99 < 1 ms, max < 20 ms).
  The cap-sized attacks are 5% of the inputs, so the p99 falls among them; `p99<4K` is the p99 of the others;
- `re-timed ms`: the variant's worst inputs (the slowest input of each of its 3 slowest input families) run again at
  the end, fastest of 5 runs. On a shared or virtual machine a
  single timing can include time the machine took elsewhere (stolen slices are counted as the thread's); the
  re-timed value is the input's own cost, and the one held to the 20 ms target;
- `max/base`: the max divided by the same variant's time on a plain well-formed answer, measured in the same run
  (a machine-independent ratio: how much worse the worst input is than a normal one).

`worst input family` is the family (`tests/fuzz_corpus.py`: soup, a message form, or an attack's prefix, unit and
size) of the variant's worst re-timed input. The worst inputs (by re-timed CPU time) are listed at the end, with a line
on the targets, and the input families with the most inputs of 1 ms or more; `--json` also records, per variant, each
family's inputs, inputs >= 1 ms and max. `--workers` splits the
completions over processes; each prints its progress to stderr. Times are kept as 8-byte integers: 1,000,000
completions x 28 variants hold about 220 MB.

`--max-minutes` stops each worker at a wall-clock budget and reports the number of completions actually scored (a
prefix of the same seeded sequence), so that a run on a busy machine ends on time with an exact `n`.

Usage: `python benchmarks/fuzz.py [--n 1000000] [--workers 16] [--seed 0] [--max-minutes M] [--json out.json]`.
"""

from __future__ import annotations

import os


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import contextlib
import gc
import json
import math
import multiprocessing
import random
import sys
import time
import warnings
from array import array
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_corpus import (  # noqa: E402
    adversarial_completion_and_family,
    columns,
    ground_truth,
    reward_variants,
    value_range,
)


RETIME = 5

NORMAL = {
    "grounding": '<think>the dog</think><answer>[{"bbox_2d": [100, 50, 300, 400], "label": "dog"}]</answer>',
    "counting": '[{"point_2d": [100, 100]}, {"point_2d": [200, 150]}, {"point_2d": [320, 400]}]',
    "ocr": "<answer>Hello world, \u00e9t\u00e9 fine.</answer>",
    "detection": '```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "person"}, {"bbox_2d": [100, 100, 400, 300], '
    '"label": "cat"}]\n```',
}


def _describe(completion) -> str:
    if isinstance(completion, str):
        head = completion[:48]
        return f"{len(completion)} chars: {head!r}{'...' if len(completion) > 48 else ''}"
    return repr(completion)[:80]


def _baseline(reward, cols, task: str, repeats: int = 200) -> int:
    samples = []
    for _ in range(repeats):
        start = time.thread_time_ns()
        reward(completions=[NORMAL[task]], **cols)
        samples.append(time.thread_time_ns() - start)
    samples.sort()
    return samples[len(samples) // 2]


def run_shard(args: tuple[int, int, int, float]) -> dict:
    shard, n, seed, budget_s = args
    warnings.simplefilter("ignore")
    rng = random.Random(f"{seed}-{shard}")
    variants = reward_variants()
    state = {}
    for label, reward, task in variants:
        cols = columns([ground_truth(task)])
        state[label] = {
            "times": array("q"),
            "cap_times": array("q"),
            "exc": 0,
            "nan": 0,
            "range": 0,
            "worst": [],
            "families": {},
            "errors": {},
            "base_ns": _baseline(reward, cols, task),
            "cols": cols,
            "range_": value_range(reward),
        }
    gc.disable()  # a collection is not the cost of the input it happens to interrupt: collect between inputs
    started = time.perf_counter()
    done = n
    for index in range(n):
        if index % 1000 == 0:
            gc.collect()
            if index and time.perf_counter() - started > budget_s:
                done = index
                print(f"shard {shard}: time budget reached after {index:,} completions", file=sys.stderr, flush=True)
                break
            if index and index % 20000 == 0:
                print(
                    f"shard {shard}: {index:,}/{n:,} in {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        completion, family = adversarial_completion_and_family(rng)
        capped = isinstance(completion, str) and len(completion) >= 4096
        for label, reward, _task in variants:
            s = state[label]
            low, high = s["range_"]
            start = time.thread_time_ns()
            try:
                (value,) = reward(completions=[completion], **s["cols"])
            except Exception as e:  # noqa: BLE001 (counted and reported)
                elapsed = time.thread_time_ns() - start
                s["exc"] += 1
                key = f"{type(e).__name__}: {str(e)[:80]}"
                s["errors"].setdefault(key, _describe(completion))
            else:
                elapsed = time.thread_time_ns() - start
                if value is None or not math.isfinite(value):
                    s["nan"] += 1
                elif not low - 1e-9 <= value <= high + 1e-9:
                    s["range"] += 1
            s["cap_times" if capped else "times"].append(elapsed)
            stats = s["families"].get(family)
            if stats is None:
                stats = s["families"][family] = [0, 0, 0]  # inputs, inputs >= 1 ms, max ns
            stats[0] += 1
            stats[1] += elapsed >= 1_000_000
            if elapsed > stats[2]:
                stats[2] = elapsed
            worst = s["worst"]  # the slowest input of each of the 3 slowest families
            if len(worst) < 3 or elapsed > worst[-1][0]:
                same = [w for w in worst if w[1] == family]
                if not same or elapsed > same[0][0]:
                    worst[:] = [w for w in worst if w[1] != family]
                    worst.append((elapsed, family, f"{family}: {_describe(completion)}", completion))
                    worst.sort(key=lambda w: -w[0])
                    del worst[3:]
    gc.enable()
    # A single timing can include the machine's noise (an interrupt, a stolen time slice): re-time each variant's
    # worst inputs and keep the fastest of `RETIME` runs, the cost of the input itself.
    for label, reward, _task in variants:
        s = state[label]
        retimed = []
        for _elapsed, family, description, completion in s["worst"]:
            runs = []
            for _ in range(RETIME):
                start = time.thread_time_ns()
                with contextlib.suppress(Exception):
                    reward(completions=[completion], **s["cols"])
                runs.append(time.thread_time_ns() - start)
            retimed.append((min(runs), description, family))
        s["worst"] = [(t, d) for t, _f, d, _c in s["worst"]]
        s["retimed"] = sorted(retimed, key=lambda w: -w[0])
    for s in state.values():
        s.pop("cols")
        s.pop("range_")
    return {"n": done, "variants": state}


def _merge(states: list[dict]) -> dict:
    merged = {}
    for state in states:
        for label, s in state["variants"].items():
            m = merged.setdefault(
                label,
                {
                    "times": array("q"),
                    "cap_times": array("q"),
                    "exc": 0,
                    "nan": 0,
                    "range": 0,
                    "worst": [],
                    "retimed": [],
                    "families": {},
                    "errors": {},
                    "base_ns": [],
                },
            )
            for family, (count, slow, worst_ns) in s["families"].items():
                f = m["families"].setdefault(family, [0, 0, 0])
                f[0], f[1], f[2] = f[0] + count, f[1] + slow, max(f[2], worst_ns)
            m["times"].extend(s["times"])
            m["cap_times"].extend(s["cap_times"])
            for key in ("exc", "nan", "range"):
                m[key] += s[key]
            m["worst"] = sorted(m["worst"] + s["worst"], key=lambda w: -w[0])[:3]
            m["retimed"] = sorted(m["retimed"] + s["retimed"], key=lambda w: -w[0])[:3]
            m["errors"].update(s["errors"])
            m["base_ns"].append(s["base_ns"])
    return merged


def _quantile(sorted_values, q: float) -> int:
    return int(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="adversarial completions (each through every reward)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=str, default=None)
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="stop each worker after this wall time; report the n scored"
    )
    args = parser.parse_args()

    workers = max(1, args.workers)
    budget_s = math.inf if args.max_minutes is None else 60.0 * args.max_minutes
    shards = [(i, args.n // workers + (i < args.n % workers), args.seed, budget_s) for i in range(workers)]
    started = time.perf_counter()
    if workers == 1:
        states = [run_shard(shards[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            states = pool.map(run_shard, shards)
    merged = _merge(states)
    wall = time.perf_counter() - started
    n_done = sum(state["n"] for state in states)

    stopped = f" (stopped by --max-minutes; {args.n:,} requested)" if n_done < args.n else ""
    print(
        f"{n_done:,} adversarial completions x {len(merged)} reward variants, {workers} worker(s), {wall:.0f} s wall"
        f"{stopped}"
    )
    print("times: CPU per completion, one completion per call; 'cap' = the cap-sized attacks (4 K-64 K chars, 5% of")
    print("the inputs, so p99 falls among them); 'p99<4K' = p99 of the other inputs;")
    print(
        f"'re-timed' = the worst inputs run again, fastest of {RETIME} (the input's cost without the machine's noise)"
    )
    header = (
        f"{'variant':38} {'exc':>4} {'nan':>4} {'range':>5} {'p50 µs':>8} {'p99 µs':>8} {'p99<4K µs':>9} "
        f"{'max ms':>7} {'re-timed ms':>11} {'cap p50 ms':>10} {'base µs':>8} {'max/base':>9}  worst input family"
    )
    print(header)
    print("-" * len(header))
    report = {
        "n": n_done,
        "n_requested": args.n,
        "seed": args.seed,
        "workers": workers,
        "wall_s": wall,
        "variants": {},
    }
    overall_worst, slow_families = [], []
    over_p99 = over_max = failures = 0
    for label, m in merged.items():
        cap = np.sort(np.frombuffer(m["cap_times"], dtype=np.int64)) if m["cap_times"] else np.zeros(1, np.int64)
        small = np.sort(np.frombuffer(m["times"], dtype=np.int64)) if m["times"] else np.zeros(1, np.int64)
        times = np.sort(np.concatenate([small, np.frombuffer(m["cap_times"], dtype=np.int64)]))
        retimed = m["retimed"][0][0] if m["retimed"] else 0
        base = sorted(m["base_ns"])[len(m["base_ns"]) // 2]
        p50, p99, worst = _quantile(times, 0.5), _quantile(times, 0.99), int(times[-1])
        print(
            f"{label:38} {m['exc']:>4} {m['nan']:>4} {m['range']:>5} {p50 / 1e3:>8.1f} {p99 / 1e3:>8.1f} "
            f"{_quantile(small, 0.99) / 1e3:>9.1f} {worst / 1e6:>7.2f} {retimed / 1e6:>11.2f} {_quantile(cap, 0.5) / 1e6:>10.2f} {base / 1e3:>8.1f} "
            f"{worst / base:>9.1f}  {m['retimed'][0][2] if m['retimed'] else ''}"
        )
        over_p99 += p99 >= 1_000_000
        over_max += retimed >= 20_000_000
        failures += m["exc"] + m["nan"] + m["range"]
        report["variants"][label] = {
            "exceptions": m["exc"],
            "non_finite": m["nan"],
            "out_of_range": m["range"],
            "p50_us": p50 / 1e3,
            "p99_us": p99 / 1e3,
            "p99_below_4k_chars_us": _quantile(small, 0.99) / 1e3,
            "max_ms": worst / 1e6,
            "worst_retimed_ms": retimed / 1e6,
            "cap_count": len(m["cap_times"]),
            "cap_p50_ms": _quantile(cap, 0.5) / 1e6,
            "cap_max_ms": int(cap[-1]) / 1e6,
            "baseline_us": base / 1e3,
            "max_over_baseline": worst / base,
            "errors": m["errors"],
            "worst_inputs": [(t / 1e6, d) for t, d in m["worst"]],
            "worst_inputs_retimed": [(t / 1e6, d) for t, d, _f in m["retimed"]],
            "worst_family": m["retimed"][0][2] if m["retimed"] else None,
            # Per input family: inputs, inputs >= 1 ms, max ms (families with an input >= 0.5 ms).
            "families": {
                family: [count, slow, worst_ns / 1e6]
                for family, (count, slow, worst_ns) in sorted(m["families"].items(), key=lambda kv: -kv[1][2])
                if worst_ns >= 500_000
            },
        }
        overall_worst.extend((t, label, d) for t, d, _f in m["retimed"])
        slow_families.extend(
            (slow, label, family, count, worst_ns) for family, (count, slow, worst_ns) in m["families"].items() if slow
        )
    print(
        f"\ntargets: exceptions / non-finite / out of range {failures} (target 0); variants with p99 >= 1 ms: "
        f"{over_p99}; with a re-timed worst input >= 20 ms: {over_max}"
    )
    print(f"\nworst inputs, re-timed (fastest of {RETIME} runs; CPU ms, variant, input):")
    for t, label, d in sorted(overall_worst, key=lambda w: -w[0])[:10]:
        print(f"  {t / 1e6:8.2f}  {label:38} {d}")
    print("\ninput families with the most inputs >= 1 ms (variant, family, inputs >= 1 ms / inputs, max ms):")
    for slow, label, family, count, worst_ns in sorted(slow_families, key=lambda w: -w[0])[:15]:
        print(f"  {label:38} {family:50} {slow:>6,} / {count:<8,} {worst_ns / 1e6:8.2f}")
    errors = {label: m["errors"] for label, m in merged.items() if m["errors"]}
    if errors:
        print("\nexceptions (first input per message):")
        for label, errs in errors.items():
            for message, example in errs.items():
                print(f"  {label}: {message}  <- {example}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()

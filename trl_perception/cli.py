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
"""The `trl-perception` console script.

```bash
trl-perception train --config recipes/quickstart.yaml            # GRPO, launched through `accelerate launch`
trl-perception train --config recipes/detection_coco.yaml --num_processes 8 --accelerate_config zero2
trl-perception eval --task grounding --model PATH --dataset refcoco --data-dir ... --image-dir ...
trl-perception rewards                                            # list the registered rewards
trl-perception tiny-model PATH [--arch qwen3_vl]                  # write the offline tiny model
```

`train` mirrors `trl grpo`: a YAML recipe (`--config`) sets the defaults of the script, `PerceptionGRPOConfig` and
TRL's `ModelConfig`; command-line flags override it; keys the script does not know (`num_processes`,
`accelerate_config` — a path or one of TRL's packaged `zero1`/`zero2`/`zero3`/`fsdp1`/`fsdp2`/`multi_gpu`/
`single_gpu` — and any other `accelerate launch` flag) go to `accelerate launch`.
"""

from __future__ import annotations

import argparse
import os
import sys


def _train(argv: list[str]) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    from .scripts import train as train_script

    parser = train_script.make_parser(prog="trl-perception train")
    # Handles -h (exits). `cli_remaining` is an ordered subsequence of argv; `config_remaining` comes from the YAML.
    *_, config_remaining, cli_remaining = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    if not any(arg.startswith("--num_cpu_threads_per_process") for arg in launch_args):
        # accelerate launch pins OMP_NUM_THREADS to 1 unless told otherwise; give each process its share of the cores
        # (CPU runs are otherwise several times slower).
        processes = _launch_arg_value(launch_args, "--num_processes", default=1)
        launch_args += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // processes))]
    script_args = _subtract_subsequence(argv, cli_remaining)
    accelerate_args = launch_command_parser().parse_args([*launch_args, train_script.__file__, *script_args])
    launch_command(accelerate_args)
    return 0


def _launch_arg_value(args: list[str], flag: str, default: int) -> int:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return int(args[i + 1])
        if arg.startswith(flag + "="):
            return int(arg.split("=", 1)[1])
    return default


def _subtract_subsequence(items: list[str], subsequence: list[str]) -> list[str]:
    """`items` without the ordered `subsequence` (the launch flags already given to accelerate)."""
    it = iter(subsequence)
    current = next(it, None)
    result = []
    for item in items:
        if current is not None and item == current:
            current = next(it, None)
        else:
            result.append(item)
    return result


def _rewards(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="trl-perception rewards", description="List the registered rewards.").parse_args(argv)
    from .rewards import get_reward, list_rewards

    for name in list_rewards():
        doc = (getattr(get_reward(name), "__doc__", None) or "").strip().splitlines()
        summary = doc[0] if doc else ""
        if len(summary) > 88:
            summary = summary[:88] + "…"
        print(f"{name:28s} {summary}")
    return 0


def _tiny_model(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trl-perception tiny-model", description="Write the offline tiny model.")
    parser.add_argument("path")
    from .families import get_family, list_families

    tiny = [name for name in list_families() if get_family(name).tiny]
    parser.add_argument("--arch", default="qwen2_5_vl", choices=tiny, help="Model family of the tiny model.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .testing import build_tiny_model

    print(build_tiny_model(args.path, arch=args.arch, seed=args.seed))
    return 0


def _eval(argv: list[str]) -> int:
    from .eval.cli import main as eval_main

    return eval_main(argv)


COMMANDS = {
    "train": (_train, "GRPO training from a YAML recipe (through accelerate launch)"),
    "eval": (_eval, "evaluate a checkpoint on grounding / counting / OCR / detection"),
    "rewards": (_rewards, "list the registered reward functions"),
    "tiny-model": (_tiny_model, "write the offline tiny Qwen-VL model used by tests and the quickstart"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        from . import __version__

        lines = [f"trl-perception {__version__}", "", "usage: trl-perception <command> [options]", "", "commands:"]
        lines += [f"  {name:12s} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    command, _ = COMMANDS[argv[0]]
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

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
"""Held-out greedy evaluation with the training rewards, and a short supervised warm start.

Both are used by `trl-perception train` (and therefore the CPU quickstart) to show what a run learned:

- [`heldout_greedy_scores`] generates greedily for held-out rows and scores the completions with the run's own
  reward functions, so "before" and "after" numbers measure exactly what GRPO optimises.
- [`supervised_warm_start`] teaches a randomly initialised model the answer *format* with a few supervised steps
  (completion-only loss). With `shuffle_targets=True` the targets are drawn from other rows, so the warm start
  carries no information about the image: any held-out accuracy above chance afterwards was learned by GRPO.
"""

from __future__ import annotations

import inspect
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from trl.data_utils import prepare_multimodal_messages


def _encode(
    processor,
    rows: Sequence[dict[str, Any]],
    targets: Sequence[str] | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
):
    # TRL's own message preparation and the run's `chat_template_kwargs` (e.g. Qwen3.5's `enable_thinking`), so
    # these prompts are exactly the ones GRPO trains on.
    images = [row["image"].convert("RGB") for row in rows]
    messages = [prepare_multimodal_messages(row["prompt"], [image]) for row, image in zip(rows, images, strict=True)]
    texts = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, **(chat_template_kwargs or {})
    )
    if targets is not None:
        eos = processor.tokenizer.eos_token
        texts = [text + target + eos for text, target in zip(texts, targets, strict=True)]
    return processor(text=texts, images=images, return_tensors="pt", padding=True)


def _call_reward(func: Callable, completions: list[str], rows: Sequence[dict[str, Any]]) -> list[float | None]:
    columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
    kwargs = {"prompts": [row["prompt"] for row in rows], "completions": completions, **columns}
    # Rewards that do not take **kwargs only get the arguments they name.
    params = inspect.signature(func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return func(**kwargs)


def reward_name(func: Callable) -> str:
    """The name TRL gives a reward function in its logs (`rewards/<name>/mean`)."""
    inner = getattr(func, "func", func)  # functools.partial
    return getattr(inner, "__name__", type(inner).__name__)


@torch.no_grad()
def heldout_greedy_scores(
    model,
    processor,
    rows: Sequence[dict[str, Any]],
    reward_funcs: Sequence[Callable],
    max_new_tokens: int = 16,
    batch_size: int = 32,
    chat_template_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    synced_gpus: bool = False,
) -> dict[str, Any]:
    """Greedy completions for `rows`, scored by each reward function; `progress` shows a progress bar (rows).

    `synced_gpus=True` when several processes generate together on a model whose forward passes are collectives
    (DeepSpeed ZeRO-3 with its hooks): each keeps stepping until all have finished. Otherwise one process generates on
    its own, even under ZeRO-3 with gathered weights (transformers would default to syncing there).

    Returns:
        `dict`: `{"n": len(rows), "rewards": {name: mean}, "reward": mean of the summed rewards,
        "completions": [...]}`. Rows where a reward returns `None` are excluded from that reward's mean.
    """
    was_training = model.training
    model.eval()
    completions: list[str] = []
    tokenizer = processor.tokenizer
    bar = tqdm(total=len(rows), desc="held-out scoring", unit="row", disable=not progress, leave=False)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        inputs = _encode(processor, batch, chat_template_kwargs=chat_template_kwargs).to(model.device)
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, synced_gpus=synced_gpus)
        completions += tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        bar.update(len(batch))
    bar.close()
    if was_training:
        model.train()

    conversational = [[{"role": "assistant", "content": text}] for text in completions]
    per_func: dict[str, list[float | None]] = {}
    for func in reward_funcs:
        per_func[reward_name(func)] = _call_reward(func, conversational, rows)
    totals = []
    for i in range(len(rows)):
        values = [scores[i] for scores in per_func.values() if scores[i] is not None]
        totals.append(sum(values) if values else None)

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else float("nan")

    return {
        "n": len(rows),
        "rewards": {name: mean(scores) for name, scores in per_func.items()},
        "per_sample": per_func,
        "reward": mean(totals),
        "completions": completions,
    }


def supervised_warm_start(
    model,
    processor,
    rows: Sequence[dict[str, Any]],
    target_fn: Callable[[dict[str, Any]], str],
    steps: int,
    learning_rate: float = 1e-3,
    batch_size: int = 16,
    shuffle_targets: bool = False,
    seed: int = 0,
    log_every: int = 0,
    chat_template_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
) -> list[float]:
    """A few steps of completion-only supervised training (AdamW). Returns the loss per step.

    Args:
        target_fn (`Callable`):
            Maps a row to its target completion text (without the end-of-turn token, which is appended).
        shuffle_targets (`bool`, *optional*, defaults to `False`):
            Pair each row with the target of a random other row: teaches the output format and the label marginal
            but nothing about the image.
        chat_template_kwargs (`dict`, *optional*):
            Passed to `apply_chat_template`, as `GRPOConfig.chat_template_kwargs` is for the rollouts.
        progress (`bool`, *optional*, defaults to `False`):
            Show a progress bar (steps, with the loss); the `log_every` lines are printed above it.
    """
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    bar = tqdm(total=steps, desc="warm start", unit="step", disable=not progress, leave=False)
    for step in range(steps):
        batch = rng.sample(list(rows), min(batch_size, len(rows)))
        sources = [rng.choice(rows) for _ in batch] if shuffle_targets else batch
        targets = [target_fn(row) for row in sources]
        inputs = _encode(processor, batch, targets, chat_template_kwargs).to(model.device)
        # Loss on the completion only: with left padding, the completion tokens are the last ones.
        completion_lengths = [
            len(processor.tokenizer(target_fn(row) + processor.tokenizer.eos_token)["input_ids"]) for row in sources
        ]
        labels = torch.full_like(inputs["input_ids"], -100)
        for i, length in enumerate(completion_lengths):
            labels[i, -length:] = inputs["input_ids"][i, -length:]
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        if log_every and (step + 1) % log_every == 0:
            # tqdm.write keeps the line above an active bar (a plain print otherwise).
            tqdm.write(f"[warm start] step {step + 1}/{steps} loss {loss.item():.4f}", file=sys.stdout)
            sys.stdout.flush()
    bar.close()
    return losses

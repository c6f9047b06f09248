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
"""Per-sample router: one reward per task, chosen by the `task` column (multi-task training)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..validation import GT_COLUMNS, ROWS_KWARG, check_column_lengths
from ._registry import _REWARDS, register_reward


DEFAULT_TASK_REWARDS: dict[str, str] = {
    "grounding": "iou_squared",
    "counting": "count_match",
    "ocr": "ocr_edit_distance",
    "detection": "detection",
}


class TaskRouterReward:
    """
    Route each row to the reward of its `task` column; rows of other tasks (or with no `task`) get `None`.

    Each task's reward is called once per call with its rows only (columns sliced accordingly), so its metrics are
    logged as `<router name>/<task>/<metric>`.

    Args:
        rewards (`dict[str, str | dict | Callable]`, *optional*):
            Task -> reward: a registry name, `{"name": registry name, **options}`, or any TRL reward callable. Defaults
            to `{"grounding": "iou_squared", "counting": "count_match", "ocr": "ocr_edit_distance",
            "detection": "detection"}`.
        name (`str`, *optional*, defaults to `"perception"`):
            The router's `__name__`.
        family, frame, min_pixels, max_pixels, factor:
            Passed to every reward built from the registry (unless its own options set them).

    Example:

    ```python
    >>> from trl_perception.rewards import get_reward
    >>> router = get_reward("perception", rewards={"grounding": "iou", "ocr": "ocr_edit_distance"}, frame="original")
    >>> router(prompts=[None] * 3, completions=["[0, 0, 10, 10]", "hello", "3"], task=["grounding", "ocr", "counting"],
    ...        boxes=[[[0, 0, 10, 20]], [], []], text=[None, "hello", None])
    [0.5, 1.0, None]

    ```
    """

    def __init__(
        self,
        rewards: Mapping[str, Any] | None = None,
        name: str = "perception",
        *,
        family: str | None = None,
        frame: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        factor: int | None = None,
    ):
        given = {
            "family": family,
            "frame": frame,
            "min_pixels": min_pixels,
            "max_pixels": max_pixels,
            "factor": factor,
        }
        shared = {key: value for key, value in given.items() if value is not None}
        self.__name__ = name
        self.rewards: dict[str, Callable[..., list[float | None]]] = {}
        for task, spec in (DEFAULT_TASK_REWARDS if rewards is None else rewards).items():
            self.rewards[task] = self._build(task, spec, shared)

    def _build(self, task: str, spec: Any, shared: dict[str, Any]) -> Callable[..., list[float | None]]:
        if callable(spec):
            return spec
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise TypeError(f"Reward for task {task!r} must be a registry name, a dict with 'name', or a callable.")
        options = dict(spec)
        registry_name = options.pop("name")
        if registry_name not in _REWARDS:
            raise ValueError(f"Unknown reward {registry_name!r} for task {task!r}.")
        # The router already selected the rows, so the sub-reward does not filter by task again.
        options = {**shared, "task": None, "name": f"{self.__name__}/{task}", **options}
        return _REWARDS[registry_name](**options)

    def __repr__(self) -> str:
        return f"TaskRouterReward(name={self.__name__!r}, tasks={sorted(self.rewards)})"

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs: Any) -> list[float | None]:
        if completions is None:
            raise TypeError(f"{self.__name__} needs `completions` (TRL passes them as a keyword argument).")
        n = len(completions)
        tasks = kwargs.get("task")
        if tasks is None:
            raise ValueError(f"Reward {self.__name__!r} routes by the `task` column, which the dataset lacks.")
        # Before slicing: a column of the wrong length would otherwise reach the task rewards unsliced.
        check_column_lengths(f"Reward {self.__name__!r}", kwargs, n, ("task", *GT_COLUMNS))
        rewards: list[float | None] = [None] * n
        for task, reward in self.rewards.items():
            rows = [i for i in range(n) if tasks[i] == task]
            if not rows:
                continue
            sub = {key: _take(value, rows, n) for key, value in kwargs.items()}
            batch_rows = kwargs.get(ROWS_KWARG)  # a router inside a router: keep the outer batch's row numbers
            sub[ROWS_KWARG] = [batch_rows[i] for i in rows] if batch_rows is not None else rows
            values = reward(
                prompts=_take(prompts, rows, n),
                completions=[completions[i] for i in rows],
                completion_ids=_take(completion_ids, rows, n),
                **sub,
            )
            for i, value in zip(rows, values, strict=True):
                rewards[i] = value
        return rewards


def _take(value: Any, rows: list[int], n: int) -> Any:
    """Rows of a per-completion column; anything else (callbacks, trainer state) passes through unchanged."""
    if isinstance(value, (list, tuple)) and len(value) == n:
        return [value[i] for i in rows]
    return value


@register_reward("perception")
def _perception(**options: Any) -> TaskRouterReward:
    return TaskRouterReward(**options)

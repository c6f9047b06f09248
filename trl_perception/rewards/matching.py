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
"""One-to-one matching between predictions (rows) and ground truth (columns).

Both matchers are one-to-one, so a duplicated prediction can never be credited twice: this is the first of the
reward-hacking guards (the other ones, caps and penalties, live in the rewards).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


# Costs are clipped to this magnitude: scipy rejects non-finite cost matrices, and overflowed entries (boxes with
# coordinates near 1e308) must still be comparable.
_COST_LIMIT = 1e15


def hungarian_match(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Minimum-cost one-to-one assignment (Hungarian algorithm, `scipy.optimize.linear_sum_assignment`).

    Args:
        cost (`np.ndarray` of shape `(N, M)`):
            Cost of matching prediction `i` with target `j`. NaN is treated as the largest cost and infinities are
            clipped, so any input gives an assignment.

    Returns:
        `(rows, cols)`: two integer arrays of length `min(N, M)`, rows increasing.

    Example:

    ```python
    >>> rows, cols = hungarian_match(np.array([[4.0, 1.0], [2.0, 3.0]]))
    >>> rows.tolist(), cols.tolist()
    ([0, 1], [1, 0])

    ```
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    if not np.isfinite(cost).all():
        cost = np.clip(np.nan_to_num(cost, nan=_COST_LIMIT), -_COST_LIMIT, _COST_LIMIT)
    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.int64), cols.astype(np.int64)


def greedy_match(score: np.ndarray, threshold: float = 0.5, inclusive: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """
    Greedy one-to-one matching by decreasing score (e.g. IoU): take the best remaining pair while its score passes
    `threshold`, then remove its row and column. This is the "max-IoU-first" matching of VLM-R1-style rewards.

    Ties are broken by row, then column (stable). NaN scores never match.

    Args:
        score (`np.ndarray` of shape `(N, M)`):
            Pair scores, higher is better.
        threshold (`float`, *optional*, defaults to `0.5`):
            Minimum score of a matched pair.
        inclusive (`bool`, *optional*, defaults to `True`):
            Whether a score equal to `threshold` matches.

    Example:

    ```python
    >>> rows, cols = greedy_match(np.array([[0.9, 0.8], [0.85, 0.6]]))  # (0, 0) first, then (1, 1)
    >>> rows.tolist(), cols.tolist()
    ([0, 1], [0, 1])

    ```
    """
    score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
    if score.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    passes = score >= threshold if inclusive else score > threshold
    candidates = np.flatnonzero(passes)
    order = candidates[np.argsort(-score.ravel()[candidates], kind="stable")]
    n_cols = score.shape[1]
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    rows: list[int] = []
    cols: list[int] = []
    limit = min(score.shape)
    for flat in order.tolist():
        r, c = divmod(flat, n_cols)
        if r in used_rows or c in used_cols:
            continue
        used_rows.add(r)
        used_cols.add(c)
        rows.append(r)
        cols.append(c)
        if len(rows) == limit:
            break
    order_rows = np.argsort(rows, kind="stable")
    return np.asarray(rows, dtype=np.int64)[order_rows], np.asarray(cols, dtype=np.int64)[order_rows]

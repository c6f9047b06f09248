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
"""OCR reward: 1 − normalized character edit distance."""

from __future__ import annotations

import unicodedata
from typing import Any

from rapidfuzz.distance import Levenshtein

from ..parsing import parse_text
from ._base import PerceptionReward, mean_or_nan
from ._registry import register_reward


def normalize_text(
    text: str, unicode_form: str | None = "NFKC", whitespace: str = "collapse", lowercase: bool = False
) -> str:
    """
    Normalization applied to both prediction and ground truth before the edit distance.

    1. Unicode normalization `unicode_form` (`"NFKC"` by default: full-width letters, ligatures such as `ﬁ` and
       compatibility spaces become their plain forms; `"NFC"`, `"NFD"`, `"NFKD"` or `None`).
    2. Whitespace (`str.isspace`, the same set as `\\s`: spaces, tabs, newlines, NBSP after NFKC): `"collapse"` (default) turns each run into
       one space and strips both ends, so line wrapping and indentation do not count as errors; `"remove"` deletes all
       whitespace (useful for CJK pages); `"keep"` leaves the text as is.
    3. `lowercase=True` case-folds.

    Example:

    ```python
    >>> normalize_text("  Ｈello\\n\\n  wor\\uFB01ed ")
    'Hello worfied'

    ```
    """
    if unicode_form is not None:
        text = unicodedata.normalize(unicode_form, text)
    # `str.split()` splits on exactly the characters of `str.isspace`, the same set as `\s` (and is ~10x faster).
    if whitespace == "collapse":
        text = " ".join(text.split())
    elif whitespace == "remove":
        text = "".join(text.split())
    if lowercase:
        text = text.casefold()
    return text


class OcrEditDistanceReward(PerceptionReward):
    """
    `r = 1 − NED(pred, gt)`, where NED is the character Levenshtein distance (unit costs, no transpositions; computed
    with `rapidfuzz`) divided by the longer length, after [`normalize_text`] on both sides. In [0, 1].

    Both texts empty after normalization gives 1 (an exactly right blank page); one empty gives 0. The prediction is
    the answer region ([`~trl_perception.parsing.parse_text`]); a parse failure (unterminated `<think>`, over-long
    output) gives 0. Rows whose `text` column is `None` are not applicable.

    Args:
        unicode_form (`str` or `None`, *optional*, defaults to `"NFKC"`):
            Unicode normalization.
        whitespace (`str`, *optional*, defaults to `"collapse"`):
            `"collapse"`, `"remove"` or `"keep"`.
        lowercase (`bool`, *optional*, defaults to `False`):
            Case-fold both texts.
        **kwargs:
            `name`, `task` (default `"ocr"`).

    Logged metrics: `edit_distance` (mean NED), `exact_match`, `length_ratio` (prediction / ground truth characters),
    `parse_failure_rate`.
    """

    default_name = "ocr_edit_distance"
    default_task = "ocr"
    gt_columns = ("text",)

    def __init__(
        self, unicode_form: str | None = "NFKC", whitespace: str = "collapse", lowercase: bool = False, **kwargs: Any
    ):
        if unicode_form not in (None, "NFC", "NFD", "NFKC", "NFKD"):
            raise ValueError(f"unicode_form must be None, 'NFC', 'NFD', 'NFKC' or 'NFKD', got {unicode_form!r}.")
        if whitespace not in ("collapse", "remove", "keep"):
            raise ValueError(f"whitespace must be 'collapse', 'remove' or 'keep', got {whitespace!r}.")
        kwargs.setdefault("frame", "original")
        super().__init__(**kwargs)
        self.unicode_form = unicode_form
        self.whitespace = whitespace
        self.lowercase = lowercase

    def _normalize(self, text: str) -> str:
        return normalize_text(text, self.unicode_form, self.whitespace, self.lowercase)

    def _score(self, texts, rows, kwargs, completion_ids):
        gt_column = self._column(kwargs, "text", self.__name__)
        rewards: list[float | None] = [None] * len(rows)
        distances, exact, ratios, failures = [], [], [], []
        for k, i in enumerate(rows):
            gt = gt_column[i]
            if gt is None:
                continue
            result = parse_text(texts[k])
            failures.append(result.error is not None)
            if result.error is not None:
                rewards[k] = 0.0
                continue
            pred, gt = self._normalize(result.value), self._normalize(gt)
            distance = Levenshtein.normalized_distance(pred, gt)  # 0.0 when both are empty
            distances.append(distance)
            exact.append(pred == gt)
            if gt:
                ratios.append(len(pred) / len(gt))
            rewards[k] = 1.0 - distance
        metrics = {
            "edit_distance": mean_or_nan(distances),
            "exact_match": mean_or_nan(exact),
            "length_ratio": mean_or_nan(ratios),
            "parse_failure_rate": mean_or_nan(failures),
        }
        return rewards, metrics


@register_reward("ocr_edit_distance")
def _ocr_edit_distance(**options: Any) -> OcrEditDistanceReward:
    return OcrEditDistanceReward(**options)

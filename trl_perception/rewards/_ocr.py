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

from ..parsing import MAX_CHARS, parse_text
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


# Starters (canonical combining class 0) that are the second element of a canonical composition (Unicode 14 data,
# plus the Hangul vowel and trailing-consonant jamo of the algorithmic compositions): a chunk boundary before one of
# them is unsafe. `tests/test_parsing_limits.py` checks the set against the running Python's `unicodedata`.
_COMPOSING_STARTERS = frozenset(
    chr(c)
    for c in (
        *(0x102E, 0x11127, 0x1133E, 0x11357, 0x114B0, 0x114BA, 0x114BD, 0x115AF, 0x11930, 0x1B35, 0x9BE, 0x9D7),
        *(0xB3E, 0xB56, 0xB57, 0xBBE, 0xBD7, 0xCC2, 0xCD5, 0xCD6, 0xD3E, 0xD57, 0xDCF, 0xDDF, 0xFB5, 0xFB7),
        *range(0x1161, 0x1176),
        *range(0x11A8, 0x11C3),
    )
)
_NORMALIZE_CHUNK = 256
# A chunk boundary is searched at most this far past the chunk's end: a longer run of combining marks (or other
# characters normalization must see together) is not text (UAX #15's stream-safe format allows 30), and CPython's
# canonical reordering is quadratic in a run's length (`"a" + "\u0301\u0316" * 32767`: 3.7 s under NFKC).
MAX_COMBINING_RUN = 32


def _safe_boundary(text: str, index: int, form: str) -> bool:
    """Whether normalizing `text[:index]` and `text[index:]` apart gives the same as normalizing `text`: the code
    point at `index` decomposes to a starter that nothing before it can compose or reorder with."""
    char = text[index]
    if char < "\u0300":  # ASCII and Latin-1: starters, never the second element of a composition
        return True
    first = unicodedata.normalize("NFKD" if "K" in form else "NFD", char)[:1]
    return unicodedata.combining(first) == 0 and first not in _COMPOSING_STARTERS


_NOT_APPLICABLE = object()
_FEW_CHARACTERS = 16


def _normalize_by_character(text: str, form: str, max_chars: int) -> str | None | object:
    """`bounded_normalize` of a text written with a few distinct characters, each a safe boundary: normalization
    then splits between any two characters, so it is each character's normalization, computed once and applied with
    `str.translate` (a C loop). A run of one character that composes slowly (16 K x U+3300, whose katakana CPython
    recomposes: 17 ms in chunks) costs about 1 ms. `_NOT_APPLICABLE` for any other text (the chunked path)."""
    chars = set(text[:_NORMALIZE_CHUNK])
    if len(chars) > _FEW_CHARACTERS or not all(_safe_boundary(char, 0, form) for char in chars):
        return _NOT_APPLICABLE
    if text.strip("".join(chars)):  # another character occurs later
        return _NOT_APPLICABLE
    table = {ord(char): unicodedata.normalize(form, char) for char in chars}
    if sum(text.count(chr(code)) * len(piece) for code, piece in table.items()) > max_chars:
        return None  # the cap, checked before anything is expanded
    return text.translate(table)


def bounded_normalize(
    text: str, form: str, max_chars: int = MAX_CHARS, chunk: int = _NORMALIZE_CHUNK, max_run: int = MAX_COMBINING_RUN
) -> str | None:
    """
    `unicodedata.normalize(form, text)` in time linear in `len(text)`, or `None` when that is not possible: the
    result would exceed `max_chars` code points (normalization expands a code point up to 18x: U+FDFA under NFKC),
    or the text holds a run of more than about `max_run` code points that normalization must see together
    (combining marks). The text is normalized in chunks of about `chunk` code points, split where normalization
    cannot cross, and the work stops at the cap: 65,536 x U+FDFA costs a few milliseconds instead of building 1.2 M
    characters, and a 64 K run of alternating combining marks costs nothing instead of seconds.

    Example:

    ```python
    >>> bounded_normalize("\ufb01ne", "NFKC")
    'fine'
    >>> bounded_normalize("\ufdfa" * 10, "NFKC", max_chars=100) is None
    True
    >>> bounded_normalize("a" + "\u0301\u0316" * 100, "NFKC") is None
    True

    ```
    """
    if unicodedata.is_normalized(form, text):
        return text if len(text) <= max_chars else None
    by_character = _normalize_by_character(text, form, max_chars)
    if by_character is not _NOT_APPLICABLE:
        return by_character
    pieces, total, start, n = [], 0, 0, len(text)
    while start < n:
        end = min(start + chunk, n)
        limit = min(end + max_run, n)
        while end < limit and not _safe_boundary(text, end, form):
            end += 1
        if end == limit < n:
            return None  # no boundary within `max_run` code points: a run of combining marks
        piece = unicodedata.normalize(form, text[start:end])
        total += len(piece)
        if total > max_chars:
            return None
        pieces.append(piece)
        start = end
    return "".join(pieces)


class OcrEditDistanceReward(PerceptionReward):
    """
    `r = 1 − NED(pred, gt)`, where NED is the character Levenshtein distance (unit costs, no transpositions; computed
    with `rapidfuzz`) divided by the longer length, after [`normalize_text`] on both sides. In [0, 1].

    Both texts empty after normalization gives 1 (an exactly right blank page); one empty gives 0. The prediction is
    the answer region ([`~trl_perception.parsing.parse_text`]); a parse failure (unterminated `<think>`, over-long
    output) gives 0. Rows whose `text` column is `None` are not applicable. The 65,536-character cap applies to the
    prediction after Unicode normalization too (normalization can expand a code point up to 18x): a longer one, or
    one with a run of more than 32 combining marks, is a parse failure (0), and normalization stops at the cap
    ([`bounded_normalize`]), so its cost stays linear.

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
            pred = result.value
            if pred is not None and self.unicode_form is not None:
                pred = bounded_normalize(pred, self.unicode_form)  # `None`: longer than the cap once normalized
            failures.append(pred is None)
            if pred is None:
                rewards[k] = 0.0
                continue
            pred = normalize_text(pred, None, self.whitespace, self.lowercase)
            gt = self._normalize(gt)
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

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
"""Safe parsing of model output: answer region, boxes, points, counts and free text.

This is the only parser in the project: rewards and evaluation both call it. Model output is untrusted, so:

- nothing is ever evaluated (`eval`/`exec`); JSON goes through `json` and everything else through precompiled,
  linear-time regular expressions;
- the work is bounded: inputs longer than `max_chars` (default 65,536) are rejected up front, at most `max_boxes`
  (default 1,000) items are converted to numbers, and the regular-expression syntaxes (lists, pairs, `<box>` tags)
  stop scanning after `max(max_boxes, MAX_BOXES) + 1` items (JSON answers count all their items); a count answer
  with more than `MAX_COUNT_TOKENS` (1,000) integers fails with `"too_many_numbers"`. Cheap `str` pre-scans (a digit,
  a closing bracket, a number word) skip the regular expressions that cannot match, so number-dense or bracket-dense
  text near the cap costs about a millisecond, not tens;
- every parser returns a [`ParseResult`]: either a value or a short failure reason (one of [`PARSE_ERRORS`]), never
  a silent default such as a `[0, 0, 0, 0]` box.

Answer region ([`extract_answer`]): the text inside the last `<answer>…</answer>` (an unterminated `<answer>` runs
to the end), else the text after the last `</think>`, else the whole text. A `<think>` that is never closed and has no
answer is a failure (`"unterminated_think"`): numbers inside reasoning are never taken as the answer.

Coordinates are returned exactly as written; the parser never guesses the coordinate frame (in particular the
presence or absence of Qwen2-VL `<|box_start|>` tokens says nothing about it). Converting to pixels is the caller's
job, with [`trl_perception.geometry.convert_boxes`] and an explicit frame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Generic, Literal, TypeVar

import numpy as np


T = TypeVar("T")

MAX_CHARS = 65536
MAX_BOXES = 1000
MAX_COUNT_DIGITS = 9
# A count answer is one number; more integers than this in the answer region is not one, and scanning them all is the
# cost of number-dense text (64 KB of `"1 "`: 32 K tokens).
MAX_COUNT_TOKENS = 1000

# Failure reasons; `ParseResult.error` is always one of these.
PARSE_ERRORS = (
    "not_a_string",  # the completion is not text
    "too_long",  # longer than `max_chars`
    "unterminated_think",  # `<think>` without `</think>` and without `<answer>`
    "missing_answer_tags",  # `require_tags=True` and no `<answer>` / `</think>`
    "no_boxes",  # no box in the answer region
    "no_points",  # no point in the answer region
    "no_count",  # no integer (digits or English number words) in the answer region
    "ambiguous_count",  # several different integers outside `<answer>` tags
    "count_too_large",  # more than `MAX_COUNT_DIGITS` digits (or, counting objects, more than `MAX_BOXES` items)
    "too_many_numbers",  # more than `MAX_COUNT_TOKENS` integers in the answer region
)


@dataclass(slots=True)
class ParseResult(Generic[T]):
    """
    Outcome of a parser: `value` on success, else `error` (a reason from [`PARSE_ERRORS`]). Treat it as immutable
    (it is not frozen only because frozen dataclasses are several times slower to build, and parsing is a hot path).

    Example:

    ```python
    >>> parse_count("<answer>3</answer>")
    ParseResult(value=3, error=None)
    >>> parse_count("no idea").error
    'no_count'

    ```
    """

    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether parsing succeeded."""
        return self.error is None


@dataclass(slots=True)
class ParsedBoxes:
    """
    Boxes found in a completion, in the order they were written (treat as immutable).

    Args:
        coords (`list[list[float]]`):
            `[x1, y1, x2, y2]` per box as written (frame unknown to the parser; may be inverted, out of range or
            infinite: use [`trl_perception.geometry.sanitize_boxes`]). At most `max_boxes` boxes.
        labels (`tuple[str | None, ...]`):
            One label per box (`"label"` of a JSON item, or the Qwen2-VL object-ref text), `None` when absent.
        num_items (`int`):
            Number of items written, including the ones beyond `max_boxes` and malformed JSON items (no usable
            `bbox_2d`). The regular-expression syntaxes stop counting at `max(max_boxes, MAX_BOXES) + 1` (then
            `capped=True`: "more than that many").
        num_malformed (`int`):
            JSON items (among the first `max_boxes`) without a `bbox_2d` of 4 numbers.
        format (`str`):
            The box syntax that read them: `"json"`, `"list"`, `"pairs"`, `"ref_box"` or a registered one.
        well_formed (`bool`):
            `False` when JSON was recovered item by item because the whole did not decode (e.g. truncated output).
        capped (`bool`):
            `True` when more than `max_boxes` items were written.

    The `boxes` property is `coords` as a float64 array of shape `(N, 4)`.
    """

    coords: list[list[float]]
    labels: tuple[str | None, ...]
    num_items: int
    num_malformed: int = 0
    format: str = "json"
    well_formed: bool = True
    capped: bool = False

    @property
    def boxes(self) -> np.ndarray:
        return np.array(self.coords, dtype=np.float64).reshape(-1, 4)


@dataclass(slots=True)
class ParsedPoints:
    """Points found in a completion (see [`ParsedBoxes`]; the `points` property has shape `(N, 2)`)."""

    coords: list[list[float]]
    labels: tuple[str | None, ...]
    num_items: int
    num_malformed: int = 0
    format: str = "json"
    well_formed: bool = True
    capped: bool = False

    @property
    def points(self) -> np.ndarray:
        return np.array(self.coords, dtype=np.float64).reshape(-1, 2)


# ----------------------------------------------------------------------------------------------------------------
# Patterns (compiled once)
# ----------------------------------------------------------------------------------------------------------------

# A number, possessive (Python >= 3.11): what follows a number in every pattern (space, comma, bracket) is never a
# digit, dot, sign or exponent, so giving characters back can never make a match, and is not tried.
_NUM = r"[-+]?+(?>\d++(?:\.\d*+)?+|\.\d++)(?:[eE][-+]?+\d++)?+"


# After an opening bracket, a lookahead first checks what every match implies: a number starts, and the next bracket
# character closes after exactly `commas` commas (numbers and `\s` hold neither). An opening bracket that starts no
# such list (`"(1,(1,(1,"`, or a 2-number list for the 4-number pattern, 64 KB of them) then fails in a C loop over a
# few characters instead of a full try of the number groups. The possessive scans stop at the next bracket or comma:
# linear overall.
def _opens(brackets: str, closers: str, commas: int) -> str:
    between = r"[^\[\](),]*+"
    more = ("," + between) * commas
    return rf"{brackets}(?=\s*[-+.\d]{between}{more}{closers})"


_OPEN, _CLOSE = r"[\[(]", r"[\])]"
_LIST4_RE = re.compile(
    rf"{_opens(_OPEN, _CLOSE, 3)}\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*{_CLOSE}"
)
_LIST2_RE = re.compile(rf"{_opens(_OPEN, _CLOSE, 1)}\s*({_NUM})\s*,\s*({_NUM})\s*{_CLOSE}")
_OPENS_PAIR = _opens(r"\(", r"\)", 1)
_QWEN2_VL_BOX_RE = re.compile(
    rf"{_OPENS_PAIR}\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,\s*{_OPENS_PAIR}\s*({_NUM})\s*,\s*({_NUM})\s*\)"
)
_OBJECT_REF_RE = re.compile(r"<\|object_ref_start\|>([^<]*)<\|object_ref_end\|>")
_REF_OR_BOX_RE = re.compile(r"<ref>([^<]*)</ref>|<box>([^<]*)</box>")
_FENCE_INFO_RE = re.compile(r"[A-Za-z0-9_+-]*")
_JSON_OBJECT_RE = re.compile(r"\{[^{}]*\}")
_BBOX_KEY_RE = re.compile(rf'"bbox_2d"\s*:\s*\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]')
_POINT_KEY_RE = re.compile(rf'"point_2d"\s*:\s*\[\s*({_NUM})\s*,\s*({_NUM})\s*\]')
_LABEL_KEY_RE = re.compile(r'"label"\s*:\s*"((?:[^"\\]|\\.){0,1000})"')
_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUES = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_WORD_VALUES["hundred"] = 100
# Letters that `re.IGNORECASE` also matches to an ASCII letter of the number words (checked against a scan of every
# code point in the tests). The count pattern spells case out in classes instead of using the flag: sre then skips a
# branch on its first character, which it cannot do for case-folded literals.
_CASE_EXTRAS = {"i": "\u0130\u0131", "k": "\u212a", "s": "\u017f"}
_CASE_FOLD = str.maketrans({extra: letter for letter, extras in _CASE_EXTRAS.items() for extra in extras})


def _ci(char: str) -> str:
    return f"[{char}{char.upper()}{_CASE_EXTRAS.get(char, '')}]"


def _word_trie(words: list[str]) -> str:
    """A case-insensitive pattern matching any of `words`, as a trie: one branch per distinct next letter."""
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict) -> str:
        branches = [_ci(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and "" not in node else f"(?:{'|'.join(branches)})"
        return body + ("?" if "" in node else "")

    return emit(trie)


# Count tokens: an integer (`(?<![\d.])\d+(?!\.?\d)`: not part of a decimal) or an English number word. No capture
# groups, so that `findall` returns them at C speed (values are then computed once per distinct token). The leading
# lookahead makes every position that cannot start a token fail on its first test; the integer's lookbehind sits after
# its first digit for the same reason. Alternatives, in order of preference at one position: "one hundred" / "a
# hundred" / "hundred", a tens word with an optional unit ("twenty-one"), a unit word; each must end a word.
_HUNDRED = _word_trie(["hundred"])
_COUNT_TOKEN_RE = re.compile(
    rf"(?=[\d{''.join(sorted({_ci(w[0])[1:-1] for w in (*_UNITS, *_TENS, 'hundred', 'a')}))}])"
    r"(?:\d(?<![\d.]\d)\d*(?!\.?\d)"
    rf"|\b(?:{_word_trie(['one'])}[\s-]+{_HUNDRED}|{_ci('a')}[\s-]+{_HUNDRED}|{_HUNDRED}"
    rf"|{_word_trie(_TENS)}(?:[\s-]+{_word_trie(_UNITS[1:10])})?|{_word_trie(_UNITS)})\b)"
)
# The integer alternative alone, starting with a class: sre then skips non-digits in a C loop instead of trying the
# pattern at every position. Used when the answer holds no number word (see `_NUMBER_WORD_STEMS`).
_COUNT_DIGITS_RE = re.compile(r"\d(?<![\d.]\d)\d*(?!\.?\d)")
# Every number word starts with one of these (its first four letters, or the whole of a 3-letter word): if none occurs
# in the lowercased answer, no word token can match. The letters the count pattern accepts beyond ASCII (`_CASE_EXTRAS`) do not lowercase to ASCII: an answer
# holding one takes the full pattern. Grouped by first letter, so that a missing letter rules its stems out with one
# single-character search (a C loop; a longer needle costs about 40x more).
_NUMBER_WORD_STEMS: dict[str, tuple[str, ...]] = {}
_stems = {w[:4] for w in (*_UNITS, *_TENS, "hundred")}
for _word in sorted(w for w in _stems if not any(w != v and w.startswith(v) for v in _stems)):
    _NUMBER_WORD_STEMS.setdefault(_word[0], ())
    _NUMBER_WORD_STEMS[_word[0]] += (_word,)
_CASE_EXTRA_CHARS = "".join(_CASE_EXTRAS.values())
# Answers shorter than this skip the pre-scans (they cost more than the scan they would save).
_PRESCAN_CHARS = 256
_DIGIT_RE = re.compile(r"\d")
_WORD_SPLIT_RE = re.compile(r"[\s-]+")
# `</think>`, optional whitespace, `<answer>`: the seam of `<think>…</think><answer>…</answer>` (linear search).
_THINK_ANSWER_SEAM_RE = re.compile(r"</think>\s*<answer>")
# Perception-R1's intended grounding format, with the special tokens escaped (its released pattern was not, D3).
_QWEN2_VL_GROUNDING_RE = re.compile(
    r"<\|object_ref_start\|>[^<]*<\|object_ref_end\|>"
    r"<\|box_start\|>\(\s*\d+\s*,\s*\d+\s*\)\s*,\s*\(\s*\d+\s*,\s*\d+\s*\)<\|box_end\|>"
    r"(?:<\|im_end\|>)?\s*"
)
_END_TOKENS = ("<|im_end|>", "<|endoftext|>")
_JSON_DECODER = json.JSONDecoder()


# ----------------------------------------------------------------------------------------------------------------
# Answer region
# ----------------------------------------------------------------------------------------------------------------


def extract_answer(text: str, require_tags: bool = False, max_chars: int = MAX_CHARS) -> ParseResult[str]:
    """
    Return the answer region of a completion (see the module docstring), stripped of surrounding whitespace and of
    the end-of-turn tokens `<|im_end|>` / `<|endoftext|>`.

    Args:
        text (`str`):
            Completion text.
        require_tags (`bool`, *optional*, defaults to `False`):
            Fail with `"missing_answer_tags"` unless the text has `<answer>` or `</think>`.
        max_chars (`int`, *optional*, defaults to `65536`):
            Longer inputs fail with `"too_long"`.

    Example:

    ```python
    >>> extract_answer("<think>maybe [1, 2, 3, 4]?</think><answer>[5, 6, 7, 8]</answer>").value
    '[5, 6, 7, 8]'
    >>> extract_answer("<think>still thinking [1, 2, 3, 4]").error
    'unterminated_think'
    >>> extract_answer("plain answer").value
    'plain answer'

    ```
    """
    if not isinstance(text, str):
        return ParseResult(error="not_a_string")
    if len(text) > max_chars:
        return ParseResult(error="too_long")
    if "<" not in text:  # fast path: no tags, no special tokens
        return ParseResult(text.strip()) if not require_tags else ParseResult(error="missing_answer_tags")
    for token in _END_TOKENS:
        if token in text:
            text = text.replace(token, "")
    start = text.rfind("<answer>")
    if start >= 0:
        start += len("<answer>")
        end = text.find("</answer>", start)
        return ParseResult(text[start : end if end >= 0 else len(text)].strip())
    end_think = text.rfind("</think>")
    if end_think >= 0:
        return ParseResult(text[end_think + len("</think>") :].strip())
    if "<think>" in text:
        return ParseResult(error="unterminated_think")
    if require_tags:
        return ParseResult(error="missing_answer_tags")
    return ParseResult(text.strip())


# The answer region of the last long text `_answer` extracted: a reward reads one completion several ways (boxes, then
# points, then a count), and each search for the tags is a pass over up to 64 KB. Keyed by identity (the tuple holds
# the text, so its id cannot be reused); the parsers only read the result.
_last_answer: tuple = (None, 0, None)


def _answer(text: str, extract: bool, max_chars: int) -> ParseResult[str]:
    global _last_answer
    if extract:
        last = _last_answer
        if last[0] is text and last[1] == max_chars:
            return last[2]
        result = extract_answer(text, max_chars=max_chars)
        if type(text) is str and len(text) > _PRESCAN_CHARS:
            _last_answer = (text, max_chars, result)
        return result
    if not isinstance(text, str):
        return ParseResult(error="not_a_string")
    if len(text) > max_chars:
        return ParseResult(error="too_long")
    return ParseResult(text)


# ----------------------------------------------------------------------------------------------------------------
# Boxes and points
# ----------------------------------------------------------------------------------------------------------------


_NUMBER_TYPES = frozenset((int, float))
_ASCII_DIGITS = "0123456789"


def _has_digit(s: str) -> bool:
    """Whether `s` holds a `\\d` (a Unicode decimal digit): ten substring searches (C loops), and a scan of the
    non-ASCII text that holds no ASCII digit."""
    for digit in _ASCII_DIGITS:
        if digit in s:
            return True
    return not s.isascii() and _DIGIT_RE.search(s) is not None


def _may_hold_list(s: str) -> bool:
    """What every `[x, y, ...]` / `(x, y, ...)` match needs: an opening and a closing bracket and a digit."""
    return ("[" in s or "(" in s) and ("]" in s or ")" in s) and _has_digit(s)


def _scan_limit(max_items: int) -> int:
    """How many items the regular-expression syntaxes scan: one beyond the larger of `max_items` and `MAX_BOXES`."""
    return max(max_items, MAX_BOXES) + 1


def _findall_upto(pattern: re.Pattern, s: str, limit: int, min_match_chars: int) -> list:
    """`pattern.findall(s)` (same values), stopping after `limit` matches. Matches do not overlap and are at least
    `min_match_chars` long, so a text too short to hold more than `limit` takes the plain `findall` (C speed)."""
    if len(s) < limit * min_match_chars:
        return pattern.findall(s)
    matches = islice(pattern.finditer(s), limit)
    if pattern.groups == 0:
        return [m.group() for m in matches]
    if pattern.groups == 1:
        return [m.group(1) for m in matches]
    return [m.groups() for m in matches]


def _to_floats(values: object, width: int) -> list[float] | None:
    """A JSON list of `width` numbers as floats (huge integers become +-inf); `None` otherwise (booleans included)."""
    if type(values) is not list or len(values) != width or not all(map(_NUMBER_TYPES.__contains__, map(type, values))):
        return None
    try:
        return list(map(float, values))
    except OverflowError:  # an integer beyond float range: keep its sign, the sanitizer rejects it
        return [float(v) if abs(v) < 1e308 else (float("inf") if v > 0 else float("-inf")) for v in values]


def _json_payload(answer: str) -> str:
    """The content of the first code fence (to the end if unterminated), else the whole answer."""
    start = answer.find("```")
    if start < 0:
        return answer
    body_start = _FENCE_INFO_RE.match(answer, start + 3).end()  # skip the info string ("json")
    end = answer.find("```", body_start)
    return answer[body_start:] if end < 0 else answer[body_start:end]


def _decode_json(payload: str) -> list | None:
    """Decode the first JSON array/object in `payload` (trailing text is ignored); `None` if it does not decode."""
    bracket, brace = payload.find("["), payload.find("{")
    start = bracket if brace < 0 or 0 <= bracket < brace else brace
    if start < 0:
        return None
    try:
        value, _ = _JSON_DECODER.raw_decode(payload, start)
    except (ValueError, RecursionError):  # malformed / truncated JSON, huge integer literal, absurd nesting depth
        return None
    if type(value) is dict:
        return [value]
    return value if type(value) is list else None


def _is_empty_json_list(answer: str) -> bool:
    """`[]`, optionally fenced (spaces and newlines allowed inside): the Qwen2.5-VL way of saying "no objects"."""
    payload = _json_payload(answer).strip()
    # Checked from the ends first: a long answer that is not `[ ]` is rejected without copying it.
    return payload[:1] == "[" and payload[-1:] == "]" and len(payload) >= 2 and not payload[1:-1].strip(" \n")


def _items_from_json(answer: str, key: str, width: int, max_items: int):
    """
    Shared JSON path of boxes (`bbox_2d`, width 4) and points (`point_2d`, width 2). Returns
    `(coords, labels, num_items, num_malformed, well_formed)`, or `None` when nothing usable is there.
    """
    payload = _json_payload(answer)
    items = _decode_json(payload)
    coords: list[list[float]] = []
    labels: list[str | None] = []
    malformed = 0
    if items is not None:
        # The cap counts well-formed items, so a malformed first item cannot hide the valid ones after it. The work
        # stays bounded: `items` came from at most `max_chars` characters.
        for item in items:
            if len(coords) >= max_items:
                break
            floats = _to_floats(item.get(key), width) if type(item) is dict else None
            if floats is None:
                malformed += 1
                continue
            coords.append(floats)
            label = item.get("label")
            labels.append(label if type(label) is str else None)
        # An empty list is a well-formed answer with zero items ("nothing to detect"), not a parse failure.
        return coords, labels, len(items), malformed, True
    # Recovery for truncated / malformed JSON: every complete `{...}` object is an item.
    key_re = _BBOX_KEY_RE if width == 4 else _POINT_KEY_RE
    objects = _JSON_OBJECT_RE.findall(payload)
    if not objects:
        # No complete object (e.g. output cut inside the first item): fall back to bare key occurrences.
        objects = [m.group(0) for m in key_re.finditer(payload)]
    for obj in objects:
        if len(coords) >= max_items:
            break
        match = key_re.search(obj)
        if match is None:
            malformed += 1
            continue
        coords.append([float(g) for g in match.groups()])
        label_match = _LABEL_KEY_RE.search(obj)
        labels.append(_decode_json_string(label_match.group(1)) if label_match else None)
    if not coords:
        return None
    return coords, labels, len(objects), malformed, False


def _decode_json_string(body: str) -> str:
    try:
        return json.loads(f'"{body}"')
    except ValueError:  # an invalid escape sequence: keep the raw text
        return body


@dataclass(frozen=True)
class BoxSyntax:
    """
    One answer syntax for boxes (see [`register_box_syntax`]).

    Args:
        name (`str`):
            Registry name, also `ParsedBoxes.format`.
        parse (`Callable[[str, int], ParsedBoxes | None]`):
            `parse(answer, max_boxes)`: the boxes written in the answer region (at most `max_boxes`), or `None` when
            none is there. Must be linear in the input size and never evaluate it.
        detect (`Callable[[str], bool]`, *optional*):
            For `"auto"` parsing: when given and true, the answer is taken to be in this syntax (a `None` from
            `parse` is then `"no_boxes"`); without it, `"auto"` tries `parse` and moves on when it finds nothing.
    """

    name: str
    parse: Callable[[str, int], ParsedBoxes | None]
    detect: Callable[[str], bool] | None = None


_BOX_SYNTAXES: dict[str, BoxSyntax] = {}
_BOX_SYNTAX_ALIASES: dict[str, str] = {}
# `"auto"` without a preferred syntax: the built-in heuristic, in this order.
_AUTO_ORDER = ("json", "ref_box", "pairs", "list")


def register_box_syntax(
    name: str,
    parse: Callable[[str, int], ParsedBoxes | None],
    *,
    detect: Callable[[str], bool] | None = None,
    aliases: tuple[str, ...] = (),
    overwrite: bool = False,
) -> BoxSyntax:
    """
    Register a box answer syntax, usable as `parse_boxes(text, format=name)` and as a model family's `box_syntax`.

    Example:

    ```python
    >>> import re
    >>> loc = re.compile(r"<loc>(\\d+) (\\d+) (\\d+) (\\d+)</loc>")
    >>> def parse_loc(answer, max_boxes):
    ...     coords = [[float(v) for v in m] for m in loc.findall(answer)[:max_boxes]]
    ...     return ParsedBoxes(coords, (None,) * len(coords), len(coords), format="loc") if coords else None
    >>> _ = register_box_syntax("loc", parse_loc, overwrite=True)
    >>> parse_boxes("<loc>1 2 3 4</loc>", format="loc").value.coords
    [[1.0, 2.0, 3.0, 4.0]]

    ```
    """
    if name == "auto" or (not overwrite and (name in _BOX_SYNTAXES or name in _BOX_SYNTAX_ALIASES)):
        raise ValueError(
            f"Box syntax {name!r} is already registered (or reserved); pass overwrite=True to replace it."
        )
    syntax = BoxSyntax(name, parse, detect)
    _BOX_SYNTAXES[name] = syntax
    for alias in aliases:
        _BOX_SYNTAX_ALIASES[alias] = name
    return syntax


def list_box_syntaxes() -> list[str]:
    """Names of the registered box syntaxes."""
    return list(_BOX_SYNTAXES)


def get_box_syntax(name: str) -> BoxSyntax:
    """The registered syntax `name` (or one of its aliases); a `ValueError` lists the registered ones."""
    syntax = _BOX_SYNTAXES.get(_BOX_SYNTAX_ALIASES.get(name, name)) if isinstance(name, str) else None
    if syntax is None:
        raise ValueError(
            f"Unknown box format {name!r}; expected 'auto' or one of {list_box_syntaxes()} "
            "(add one with trl_perception.parsing.register_box_syntax)."
        )
    return syntax


def _parse_json_boxes(answer: str, max_boxes: int) -> ParsedBoxes | None:
    found = _items_from_json(answer, "bbox_2d", 4, max_boxes)
    if found is None:
        return None
    coords, labels, num_items, malformed, well_formed = found
    capped = len(coords) + malformed < num_items
    return ParsedBoxes(coords, tuple(labels), num_items, malformed, "json", well_formed, capped)


def _parse_pair_boxes(answer: str, max_boxes: int) -> ParsedBoxes | None:
    if not ("(" in answer and ")" in answer and _has_digit(answer)):
        return None
    matches = _findall_upto(_QWEN2_VL_BOX_RE, answer, _scan_limit(max_boxes), len("(0,0),(0,0)"))
    if not matches:
        return None
    kept = matches[:max_boxes]
    refs = []
    if "<|object_ref_start|>" in answer:
        refs = _findall_upto(_OBJECT_REF_RE, answer, len(kept), len("<|object_ref_start|><|object_ref_end|>"))
    labels = tuple(refs[i].strip() if i < len(refs) else None for i in range(len(kept)))
    coords = [[float(v) for v in m] for m in kept]
    return ParsedBoxes(coords, labels, len(matches), 0, "pairs", True, len(matches) > max_boxes)


def _parse_list_boxes(answer: str, max_boxes: int) -> ParsedBoxes | None:
    if not _may_hold_list(answer):
        return None
    matches = _findall_upto(_LIST4_RE, answer, _scan_limit(max_boxes), len("[0,0,0,0]"))
    if not matches:
        return None
    kept = matches[:max_boxes]
    coords = [[float(v) for v in m] for m in kept]
    return ParsedBoxes(coords, (None,) * len(kept), len(matches), 0, "list", True, len(matches) > max_boxes)


def _parse_ref_boxes(answer: str, max_boxes: int) -> ParsedBoxes | None:
    """`<ref>label</ref><box>[[x1, y1, x2, y2], ...]</box>`: every box takes the label of the last `<ref>` before it."""
    coords: list[list[float]] = []
    labels: list[str | None] = []
    total = 0
    limit = _scan_limit(max_boxes)
    label: str | None = None
    for match in _REF_OR_BOX_RE.finditer(answer):
        ref, body = match.group(1), match.group(2)
        if ref is not None:
            label = ref.strip()
            continue
        for numbers in _findall_upto(_LIST4_RE, body, limit - total, len("[0,0,0,0]")):
            total += 1
            if len(coords) < max_boxes:
                coords.append([float(v) for v in numbers])
                labels.append(label)
        if total >= limit:
            break
    if not total:
        return None
    return ParsedBoxes(coords, tuple(labels), total, 0, "ref_box", True, total > max_boxes)


register_box_syntax("json", _parse_json_boxes, detect=lambda s: "bbox_2d" in s or _is_empty_json_list(s))
register_box_syntax("pairs", _parse_pair_boxes, aliases=("qwen2_vl",))
register_box_syntax("list", _parse_list_boxes)
register_box_syntax("ref_box", _parse_ref_boxes, detect=lambda s: "<box>" in s)


def parse_boxes(
    text: str,
    format: str = "auto",
    max_boxes: int = MAX_BOXES,
    max_chars: int = MAX_CHARS,
    extract: bool = True,
    prefer: str | None = None,
) -> ParseResult[ParsedBoxes]:
    """
    Parse boxes from a completion.

    Formats (registered box syntaxes; more with [`register_box_syntax`]):

    - `"json"`: Qwen2.5-VL / Qwen3-VL `[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}, ...]`, with or without a
      ```` ```json ```` fence; truncated output keeps every complete item (`well_formed=False`).
    - `"list"`: plain `[x1, y1, x2, y2]` or `(x1, y1, x2, y2)` lists (every occurrence, in order).
    - `"pairs"` (alias `"qwen2_vl"`): `(x1,y1),(x2,y2)`, with or without the `<|box_start|>`/`<|box_end|>` tokens
      (TRL decodes completions with special tokens skipped). Labels come from
      `<|object_ref_start|>…<|object_ref_end|>` if present.
    - `"ref_box"`: InternVL `<ref>label</ref><box>[[x1, y1, x2, y2], ...]</box>`.
    - `"auto"` (default): the `prefer`red syntax first (a model family's `box_syntax`), then `"json"` if the answer
      mentions `bbox_2d`, else `"ref_box"` if it holds a `<box>` tag, else `"pairs"` if a coordinate pair is found,
      else `"list"`.

    Args:
        text (`str`):
            Completion text.
        format (`str`, *optional*, defaults to `"auto"`):
            `"auto"` or a registered syntax.
        max_boxes (`int`, *optional*, defaults to `1000`):
            At most this many boxes are returned (`capped=True` beyond).
        max_chars (`int`, *optional*, defaults to `65536`):
            Longer inputs fail with `"too_long"`.
        extract (`bool`, *optional*, defaults to `True`):
            Parse only the answer region ([`extract_answer`]).
        prefer (`str`, *optional*):
            With `"auto"`: a syntax to try before the built-in order.

    Example:

    ```python
    >>> r = parse_boxes('```json\\n[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]\\n```')
    >>> r.value.boxes.tolist(), r.value.labels
    ([[10.0, 20.0, 30.0, 40.0]], ('cat',))
    >>> parse_boxes("The dog<|box_start|>(12,5),(300,400)<|box_end|>").value.boxes.tolist()
    [[12.0, 5.0, 300.0, 400.0]]
    >>> parse_boxes("The dog(12,5),(300,400)").value.format
    'pairs'
    >>> parse_boxes("<ref>dog</ref><box>[[1, 2, 3, 4]]</box>", prefer="ref_box").value.labels
    ('dog',)
    >>> parse_boxes("I cannot see it.").error
    'no_boxes'

    ```
    """
    syntax = None if format == "auto" else get_box_syntax(format)
    order: tuple[BoxSyntax, ...]
    if syntax is not None:
        order = (syntax,)
    else:
        preferred = () if prefer is None else (get_box_syntax(prefer),)
        order = preferred + tuple(
            _BOX_SYNTAXES[name] for name in _AUTO_ORDER if not preferred or name != preferred[0].name
        )
    answer = _answer(text, extract, max_chars)
    if not answer.ok:
        return ParseResult(error=answer.error)
    s = answer.value
    for candidate in order:
        committed = syntax is not None or (candidate.detect is not None and candidate.detect(s))
        if candidate.detect is not None and not committed:
            continue
        boxes = candidate.parse(s, max_boxes)
        if boxes is not None:
            return ParseResult(boxes)
        if committed:
            break
    return ParseResult(error="no_boxes")


def parse_points(
    text: str,
    format: Literal["auto", "json", "list"] = "auto",
    max_points: int = MAX_BOXES,
    max_chars: int = MAX_CHARS,
    extract: bool = True,
) -> ParseResult[ParsedPoints]:
    """
    Parse points: Qwen2.5-VL JSON `[{"point_2d": [x, y], "label": "..."}, ...]` (`"json"`, tolerant like
    [`parse_boxes`]) or plain `[x, y]` / `(x, y)` pairs (`"list"`). `"auto"` picks JSON if `point_2d` is present.

    Example:

    ```python
    >>> parse_points('[{"point_2d": [5, 7], "label": "cup"}, {"point_2d": [1, 2]}]').value.points.tolist()
    [[5.0, 7.0], [1.0, 2.0]]
    >>> parse_points("<answer>(3, 4) and (5.5, 6)</answer>").value.points.tolist()
    [[3.0, 4.0], [5.5, 6.0]]

    ```
    """
    if format not in ("auto", "json", "list"):
        raise ValueError(f"Unknown point format {format!r}; expected 'auto', 'json' or 'list'.")
    answer = _answer(text, extract, max_chars)
    if not answer.ok:
        return ParseResult(error=answer.error)
    s = answer.value
    if format == "json" or (format == "auto" and ("point_2d" in s or _is_empty_json_list(s))):
        found = _items_from_json(s, "point_2d", 2, max_points)
        if found is None:
            return ParseResult(error="no_points")
        coords, labels, num_items, malformed, well_formed = found
        capped = len(coords) + malformed < num_items
        return ParseResult(ParsedPoints(coords, tuple(labels), num_items, malformed, "json", well_formed, capped))
    matches = _findall_upto(_LIST2_RE, s, _scan_limit(max_points), len("[0,0]")) if _may_hold_list(s) else []
    if not matches:
        return ParseResult(error="no_points")
    kept = matches[:max_points]
    coords = [[float(v) for v in m] for m in kept]
    capped = len(matches) > max_points
    return ParseResult(ParsedPoints(coords, (None,) * len(kept), len(matches), 0, "list", True, capped))


# ----------------------------------------------------------------------------------------------------------------
# Counts and text
# ----------------------------------------------------------------------------------------------------------------


def _may_hold_number_word(s: str) -> bool:
    """False when no number word of `_COUNT_TOKEN_RE` can match in `s` (a necessary condition, checked in C loops)."""
    if any(map(s.__contains__, _CASE_EXTRA_CHARS)):
        return True
    lowered = s.lower()
    return any(
        first in lowered and any(map(lowered.__contains__, stems)) for first, stems in _NUMBER_WORD_STEMS.items()
    )


def _token_value(token: str) -> int | None:
    """Value of one `_COUNT_TOKEN_RE` token; `None` for an integer of more than `MAX_COUNT_DIGITS` digits."""
    if token[0].isdigit():
        digits = token.lstrip("0") or "0"
        return int(digits) if len(digits) <= MAX_COUNT_DIGITS else None
    words = _WORD_SPLIT_RE.split(token.translate(_CASE_FOLD).lower())  # "ſix", "eİght": the letters they match
    if words[-1] == "hundred":
        return 100
    return sum(_WORD_VALUES[w] for w in words)  # "twenty-one": tens + unit


def parse_count(text: str, max_chars: int = MAX_CHARS, extract: bool = True) -> ParseResult[int]:
    """
    Parse a non-negative integer count, written in digits or in English words (`zero` … `ninety-nine`, `hundred`).

    Inside `<answer>` tags the **last** integer wins (`"<answer>2 dogs + 1 dog = 3</answer>"` → 3). Without tags the
    answer must contain exactly one distinct integer; several different ones fail with `"ambiguous_count"` rather than
    guessing. Decimals (`3.5`) are not counts. More than `MAX_COUNT_TOKENS` (1,000) integers in the answer region
    fail with `"too_many_numbers"` (the scan stops there).

    Example:

    ```python
    >>> parse_count("There are twenty-one birds.").value
    21
    >>> parse_count("<think>1, 2, 3</think><answer>3</answer>").value
    3
    >>> parse_count("2 or 3").error
    'ambiguous_count'

    ```
    """
    answer = _answer(text, extract, max_chars)
    if not answer.ok:
        return ParseResult(error=answer.error)
    # Linear in the answer's length: one C-level scan, then Python work once per *distinct* token.
    s = answer.value
    pattern = _COUNT_TOKEN_RE
    if len(s) > _PRESCAN_CHARS and not _may_hold_number_word(s):
        if s.isascii() and not _has_digit(s):  # (for other text, the integer pattern's scan is the digit search)
            return ParseResult(error="no_count")
        pattern = _COUNT_DIGITS_RE  # no number word can match: the integer pattern alone, which skips in C
    # Tokens are separated by at least one character: a text under 2 x MAX_COUNT_TOKENS cannot hold more.
    tokens = _findall_upto(pattern, s, MAX_COUNT_TOKENS + 1, 2)
    if len(tokens) > MAX_COUNT_TOKENS:
        return ParseResult(error="too_many_numbers")
    if not tokens:
        return ParseResult(error="no_count")
    values = {token: _token_value(token) for token in set(tokens)}
    if None in values.values():
        return ParseResult(error="count_too_large")
    tagged = isinstance(text, str) and extract and "<answer>" in text
    if tagged or len(set(values.values())) == 1:
        return ParseResult(values[tokens[-1]])
    return ParseResult(error="ambiguous_count")


def parse_text(text: str, max_chars: int = MAX_CHARS, extract: bool = True) -> ParseResult[str]:
    """
    Free text (OCR): the answer region, stripped of surrounding whitespace and end-of-turn tokens. An empty answer is
    a valid (empty) text. Normalization for scoring (Unicode, inner whitespace) is the reward's business.

    Example:

    ```python
    >>> parse_text("<think>a page</think><answer>\\nHello  world\\n</answer>").value
    'Hello  world'

    ```
    """
    answer = _answer(text, extract, max_chars)
    if not answer.ok or extract:
        return answer
    return ParseResult(answer.value.strip())


# ----------------------------------------------------------------------------------------------------------------
# Format checks
# ----------------------------------------------------------------------------------------------------------------


def check_answer_format(text: str, require_think: bool = True, max_chars: int = MAX_CHARS) -> bool:
    """
    Whether the whole completion is `<think>…</think><answer>…</answer>` (or only `<answer>…</answer>` with
    `require_think=False`); newlines are allowed inside and between the tags.

    Example:

    ```python
    >>> check_answer_format("<think>\\nstep 1\\nstep 2\\n</think>\\n<answer>3</answer>")
    True
    >>> check_answer_format("<answer>3</answer>")
    False

    ```
    """
    if not isinstance(text, str) or len(text) > max_chars:
        return False
    # Equivalent to a full match of `\s*<think>.*?</think>\s*<answer>.*?</answer>\s*` (DOTALL) in linear time: that
    # regex, with two lazy `.*?`, backtracks quadratically on tag spam (`"</think><answer>" * 4095`: 1.5 s).
    s = text.strip()  # `str.strip()` removes exactly the characters `\s` matches
    if not s.endswith("</answer>"):
        return False
    if not require_think:
        return s.startswith("<answer>") and len(s) >= len("<answer></answer>")
    if not s.startswith("<think>"):
        return False
    return _THINK_ANSWER_SEAM_RE.search(s, len("<think>"), len(s) - len("</answer>")) is not None


def check_qwen2_vl_grounding_format(text: str, max_chars: int = MAX_CHARS) -> bool:
    """
    Whether `text` (decoded **with** special tokens) is exactly
    `<|object_ref_start|>PHRASE<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>` optionally followed by
    `<|im_end|>`: Perception-R1's grounding format with its special tokens escaped.

    Example:

    ```python
    >>> check_qwen2_vl_grounding_format("<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|><|im_end|>")
    True
    >>> check_qwen2_vl_grounding_format("<oops")
    False

    ```
    """
    if not isinstance(text, str) or len(text) > max_chars:
        return False
    return _QWEN2_VL_GROUNDING_RE.fullmatch(text.replace("<|endoftext|>", "")) is not None

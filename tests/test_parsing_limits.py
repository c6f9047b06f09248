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
"""The linear-time rewrites (answer format, counts, bounded Unicode normalization) give the old results exactly.

Their speed is measured by `benchmarks/fuzz.py` (ratios against a baseline of the same run), not by timed tests.
"""

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from trl_perception import parsing
from trl_perception.parsing import (
    _CASE_FOLD,
    MAX_COUNT_DIGITS,
    MAX_COUNT_TOKENS,
    ParseResult,
    _answer,
    _ci,
    check_answer_format,
    parse_count,
)
from trl_perception.rewards import get_reward
from trl_perception.rewards._ocr import _COMPOSING_STARTERS, bounded_normalize


# -- reference implementations (the previous, super-linear code) ----------------------------------------------

_THINK_ANSWER_RE = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.DOTALL)
_ANSWER_ONLY_RE = re.compile(r"\s*<answer>.*?</answer>\s*", re.DOTALL)

_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
_UNITS = (_UNITS + "seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORDS = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_REF_COUNT_RE = re.compile(
    r"(?<![\d.])\d+(?!\.?\d)"
    rf"|\b(?:(?:one|a)[\s-]+)?hundred\b|\b({'|'.join(_TENS)})(?:[\s-]+({'|'.join(_UNITS[1:10])}))?\b"
    rf"|\b({'|'.join(_UNITS)})\b",
    re.IGNORECASE,
)


def reference_check_answer_format(text, require_think=True):
    pattern = _THINK_ANSWER_RE if require_think else _ANSWER_ONLY_RE
    return pattern.fullmatch(text) is not None


def _fold(word):  # what IGNORECASE matched, as the ASCII word (the previous code raised KeyError on "ſix")
    return word.translate(_CASE_FOLD).lower()


def reference_parse_count(text):
    answer = _answer(text, True, 65536)
    if not answer.ok:
        return ParseResult(error=answer.error)
    values = []
    for match in _REF_COUNT_RE.finditer(answer.value):
        token = match.group(0)
        if token[0].isdigit():
            digits = token.lstrip("0") or "0"
            if len(digits) > MAX_COUNT_DIGITS:
                return ParseResult(error="count_too_large")
            values.append(int(digits))
        elif match.group(1) is not None:
            values.append(_WORDS[_fold(match.group(1))] + (_WORDS[_fold(match.group(2))] if match.group(2) else 0))
        elif match.group(3) is not None:
            values.append(_WORDS[_fold(match.group(3))])
        else:
            values.append(100)
    if not values:
        return ParseResult(error="no_count")
    if "<answer>" in text or len(set(values)) == 1:
        return ParseResult(values[-1])
    return ParseResult(error="ambiguous_count")


_REF_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
REFERENCE_NUMBER_PATTERNS = {
    "_LIST4_RE": rf"[\[(]\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*[\])]",
    "_LIST2_RE": rf"[\[(]\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*[\])]",
    "_QWEN2_VL_BOX_RE": rf"\(\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*\)\s*,\s*\(\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*\)",
    "_BBOX_KEY_RE": rf'"bbox_2d"\s*:\s*\[\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*\]',
    "_POINT_KEY_RE": rf'"point_2d"\s*:\s*\[\s*({_REF_NUM})\s*,\s*({_REF_NUM})\s*\]',
}


# -- answer format --------------------------------------------------------------------------------------------

_TAG_PIECES = ["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "\u3000", "x", "<", ">", "/", "think"]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_TAG_PIECES), max_size=14), st.booleans())
def test_answer_format_matches_the_regex(pieces, require_think):
    text = "".join(pieces)
    assert check_answer_format(text, require_think) == reference_check_answer_format(text, require_think)


def test_answer_format_on_tag_spam():
    spam = "<think>" + "</think><answer>" * 4094 + "X"  # 64 KB
    assert not check_answer_format(spam)
    assert check_answer_format(spam + "</answer>")
    assert check_answer_format(spam[len("<think></think>") :] + "</answer>", require_think=False)
    assert not check_answer_format("<think></answer>")


# -- counts ---------------------------------------------------------------------------------------------------

_COUNT_PIECES = [
    *"0123456789",
    "1234567890",
    ".",
    " ",
    "-",
    ",",
    "one",
    "One",
    "a",
    "hundred",
    "twenty",
    "Ninety",
    "seven",
    "nineteen",
    "zero",
    "x",
    "<answer>",
    "</answer>",
    "<think>",
    "</think>",
    "SIX",
    "\u017fix",  # long s
    "e\u0130ght",  # dotted capital I
    "f\u0131ve",  # dotless i
    "e\u0301",
    "\u212a",  # Kelvin sign
]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_COUNT_PIECES), max_size=12))
def test_parse_count_matches_the_reference(pieces):
    text = "".join(pieces)
    assert parse_count(text) == reference_parse_count(text)


_FILLERS = ["", "x" * 300, " " * 300, "\u00e9" * 300, "[(" * 150, "thin " * 60]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_COUNT_PIECES), max_size=12), st.sampled_from(_FILLERS), st.sampled_from(_FILLERS))
def test_parse_count_prescans_match_the_reference(pieces, before, after):
    """Answers longer than the pre-scan threshold (number-word and digit pre-scans) give the reference's results."""
    text = before + "".join(pieces) + after
    assert parse_count(text) == reference_parse_count(text)


def test_count_pattern_case_classes_match_ignorecase():
    """The count pattern spells case out in classes: they hold exactly what `re.IGNORECASE` matches."""
    every_char = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    letters = sorted(set("".join([*_UNITS, *_TENS, "hundred", "a"])))
    folded = set(re.findall(f"[{''.join(letters)}]", every_char, re.IGNORECASE))
    for letter in letters:
        expected = {c for c in folded if re.fullmatch(letter, c, re.IGNORECASE)}
        assert expected == set(_ci(letter)[1:-1]), letter


def test_parse_count_number_dense_text():
    # More than MAX_COUNT_TOKENS integers: not a count answer, and the scan stops there.
    assert parse_count("[1,2,3," * 9362).error == "too_many_numbers"
    assert parse_count("(1," * 21845).error == "too_many_numbers"
    assert parse_count("<answer>" + "1 " * 30000 + "12345678901</answer>").error == "too_many_numbers"
    # Up to the limit, the reference's results.
    at_limit = "<answer>" + "1 " * (MAX_COUNT_TOKENS - 1) + "12345678901</answer>"
    assert parse_count(at_limit) == reference_parse_count(at_limit) == ParseResult(error="count_too_large")
    assert parse_count("(1," * MAX_COUNT_TOKENS).value == 1
    assert parse_count("(1," * (MAX_COUNT_TOKENS + 1)).error == "too_many_numbers"
    assert parse_count("x" * 5000 + " 7 " + "x" * 5000).value == 7
    assert parse_count("Twenty-One and twenty one").value == 21
    assert [parse_count(w).value for w in ("\u017fix", "e\u0130ght", "f\u0131ve", "SEVENTY-\u017fIX")] == [6, 8, 5, 76]


# -- number lists (possessive numbers, a lookahead after the opening bracket) ---------------------------------

_LIST_PIECES = [*"0123456789", ".", "-", "+", "e", "E", ",", " ", "[", "]", "(", ")", "\n", "x", "1e5", "2.", ".5"]
_LIST_PIECES += ['"bbox_2d": [', '"point_2d":[', "), (", "]]"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_LIST_PIECES), max_size=24))
def test_number_patterns_match_the_reference(pieces):
    text = "".join(pieces)
    for name, reference in REFERENCE_NUMBER_PATTERNS.items():
        assert getattr(parsing, name).findall(text) == re.findall(reference, text), name


# -- bounded normalization ------------------------------------------------------------------------------------


def test_composing_starters_cover_this_python():
    """Every starter that is the second element of a primary composition, per the running `unicodedata`."""
    seconds = set()
    for code in range(0x110000):
        char = chr(code)
        d = unicodedata.normalize("NFD", char)
        if len(d) == 2 and unicodedata.normalize("NFC", d) == char and unicodedata.combining(d[1]) == 0:
            seconds.add(d[1])
    seconds |= {chr(c) for c in range(0x11A8, 0x11C3)}  # Hangul trailing consonants (LV + T)
    assert seconds <= _COMPOSING_STARTERS


_TRICKY = [
    "a",
    "e",
    " ",
    "\u00e9",
    "\u0301",
    "\u0316",
    "\u0323",
    "\u0307",
    "\u1e9b",
    "\ufb01",
    "\ufdfa",
    "\u3300",
    "\u30cf",
    "\u309a",
    "\uff9f",
    "\u0f73",
    "\u0f71",
    "\u0f40",
    "\u1100",
    "\u1161",
    "\u11a8",
    "\uac00",
    "\u0b47",
    "\u0b3e",
    "\u0dd9",
    "\u0dcf",
    "\u00a8",
    "\u2126",
]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(_TRICKY), max_size=40), st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"]))
def test_bounded_normalize_equals_normalize(chars, form):
    text = "".join(chars)
    expected = unicodedata.normalize(form, text)
    result = bounded_normalize(text, form, chunk=3, max_run=64)
    assert result == expected
    capped = bounded_normalize(text, form, max_chars=len(expected) - 1, chunk=3, max_run=64)
    assert capped is None


def test_bounded_normalize_refuses_expansion_and_mark_runs():
    assert bounded_normalize("\ufdfa" * 65536, "NFKC") is None  # 18x expansion past the cap
    assert bounded_normalize("a" + "\u0301\u0316" * 32767, "NFKC") is None  # quadratic canonical reordering
    page = "e\u0301 \uff21\ufb01" * 10000
    assert bounded_normalize(page, "NFKC") == unicodedata.normalize("NFKC", page)


def test_ocr_reward_caps_the_prediction_after_normalization():
    reward = get_reward("ocr_edit_distance")
    logged = {}
    values = reward(
        completions=["\ufdfa" * 65536, "a" + "\u0301\u0316" * 30000, "\ufb01ne"],
        text=["hello", "hello", "fine"],
        log_metric=lambda k, v: logged.setdefault(k, v),
    )
    assert values == [0.0, 0.0, 1.0]
    assert logged["ocr_edit_distance/parse_failure_rate"] == 2 / 3


# -- scan limits and pre-scans of the box and point syntaxes ---------------------------------------------------

# Long fillers take the capped scan (texts over `limit x shortest match`) and exercise the `str` pre-scans.
_LONG_FILLERS = ["", "x" * 10000, "[(" * 5000, "1 " * 5000, ")]" * 5000]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LIST_PIECES), max_size=24), st.sampled_from(_LONG_FILLERS))
def test_box_and_point_syntaxes_on_long_answers_match_the_reference(pieces, filler):
    text = filler + "".join(pieces) + filler
    for name, parse in (
        ("_LIST4_RE", lambda t: parsing.parse_boxes(t, format="list", extract=False)),
        ("_QWEN2_VL_BOX_RE", lambda t: parsing.parse_boxes(t, format="pairs", extract=False)),
        ("_LIST2_RE", lambda t: parsing.parse_points(t, format="list", extract=False)),
    ):
        expected = re.findall(REFERENCE_NUMBER_PATTERNS[name], text)
        result = parse(text)
        if not expected:
            assert result.error in ("no_boxes", "no_points"), name
            continue
        assert result.value.coords == [[float(v) for v in m] for m in expected[: parsing.MAX_BOXES]], name
        assert result.value.num_items == min(len(expected), parsing.MAX_BOXES + 1), name


def test_list_syntaxes_stop_scanning_after_the_limit():
    from trl_perception.rewards import predicted_count

    v = parsing.parse_boxes("[1,2,3,4]" * 1500).value
    assert len(v.coords) == 1000 and v.num_items == 1001 and v.capped
    v = parsing.parse_boxes("[1,2,3,4]" * 1500, max_boxes=1).value
    assert len(v.coords) == 1 and v.num_items == 1001 and v.capped
    v = parsing.parse_boxes("(1,2),(3,4)," * 1500, max_boxes=5).value
    assert v.format == "pairs" and len(v.coords) == 5 and v.num_items == 1001
    v = parsing.parse_boxes("<ref>a</ref><box>[[1,2,3,4]]</box>" * 1200, format="ref_box").value
    assert len(v.coords) == 1000 and v.num_items == 1001 and v.labels[-1] == "a"
    assert parsing.parse_points("[1,2] " * 1500).value.num_items == 1001
    # JSON answers count every item.
    items = ",".join('{"bbox_2d":[1,2,3,4]}' for _ in range(1500))
    assert parsing.parse_boxes(f"[{items}]").value.num_items == 1500
    # A count of objects is read exactly up to MAX_BOXES; beyond, it is a counted failure, not a guess.
    assert predicted_count("[1,2,3,4] " * 1000) == (1000, None)
    assert predicted_count("[1,2,3,4] " * 1001) == (None, "count_too_large")
    assert predicted_count(f"[{items}]") == (None, "count_too_large")


def test_ocr_table_normalization_of_repeated_characters():
    for text in ("\u3300" * 16384, "ab\u3300\uff21 " * 3000, "\uff21" * 65536, "\ufb01" * 30000):
        for form in ("NFC", "NFD", "NFKC", "NFKD"):
            expected = unicodedata.normalize(form, text)
            assert bounded_normalize(text, form) == (expected if len(expected) <= 65536 else None), (text[:4], form)

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
"""Category tables for detection rewards: names, dataset ids and a contiguous class index.

Dataset ids are not class indices: COCO uses ids 1..90 with 10 gaps. DETR-style class costs need a contiguous index
`0..C-1`; Perception-R1 indexed by the raw id for predictions and by `id - 1` for targets (its defect D5), so classes
were misaligned and `toothbrush` (id 90) raised. [`CategoryTable`] owns the one mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


# COCO 2017 `instances_*.json` categories (id -> name); 80 classes, ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 unused.
COCO_CATEGORIES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra",
    25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee",
    35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass", 47: "cup", 48: "fork",
    49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich", 55: "orange", 56: "broccoli",
    57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant",
    65: "bed", 67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard",
    77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book",
    85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}  # fmt: skip


@dataclass(frozen=True)
class CategoryTable:
    """
    Names, dataset ids and contiguous indices of a detection label set.

    Contiguous indices follow increasing dataset id. Name lookup is exact after stripping surrounding whitespace
    (COCO names must match exactly, e.g. `"tv"`, `"couch"`, `"hair drier"`); `case_sensitive=False` also accepts
    other casings.

    Example:

    ```python
    >>> table = CategoryTable.coco()
    >>> len(table), table.index_of_id(1), table.index_of_id(90), table.index_of_name("toothbrush")
    (80, 0, 79, 79)
    >>> table.index_of_name("unicorn") is None
    True

    ```
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]
    case_sensitive: bool = True
    _by_id: dict[int, int] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if len(self.ids) != len(self.names) or not self.ids:
            raise ValueError("A category table needs as many names as ids, and at least one category.")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("Category ids must be unique.")
        order = sorted(range(len(self.ids)), key=lambda k: self.ids[k])
        ids = tuple(int(self.ids[k]) for k in order)
        names = tuple(str(self.names[k]) for k in order)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_by_id", {i: k for k, i in enumerate(ids)})
        keys = [self._key(n) for n in names]
        if len(set(keys)) != len(keys):
            raise ValueError("Category names must be unique.")
        object.__setattr__(self, "_by_name", {n: k for k, n in enumerate(keys)})

    def _key(self, name: str) -> str:
        name = name.strip()
        return name if self.case_sensitive else name.casefold()

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def coco(cls, case_sensitive: bool = True) -> CategoryTable:
        """The 80 COCO 2017 categories."""
        return cls(tuple(COCO_CATEGORIES), tuple(COCO_CATEGORIES.values()), case_sensitive)

    @classmethod
    def from_any(cls, categories: Any = None, case_sensitive: bool = True) -> CategoryTable:
        """
        Build a table from `None` (COCO), a `CategoryTable`, a `{id: name}` mapping, a COCO-style list of
        `{"id": ..., "name": ...}` dicts, or a list of names (ids `1..C` in list order).
        """
        if categories is None:
            return cls.coco(case_sensitive)
        if isinstance(categories, CategoryTable):
            return categories
        if isinstance(categories, Mapping):
            return cls(tuple(int(k) for k in categories), tuple(categories.values()), case_sensitive)
        if isinstance(categories, Iterable) and not isinstance(categories, str):
            items = list(categories)
            if all(isinstance(c, Mapping) for c in items):
                return cls(tuple(int(c["id"]) for c in items), tuple(c["name"] for c in items), case_sensitive)
            if all(isinstance(c, str) for c in items):
                return cls(tuple(range(1, len(items) + 1)), tuple(items), case_sensitive)
        raise TypeError("categories must be None, a CategoryTable, {id: name}, [{'id', 'name'}, ...] or [name, ...].")

    def index_of_id(self, category_id: int) -> int | None:
        """Contiguous index of a dataset id, `None` if unknown."""
        return self._by_id.get(int(category_id))

    def index_of_name(self, name: object) -> int | None:
        """Contiguous index of a label string, `None` if unknown or not a string."""
        if not isinstance(name, str):
            return None
        return self._by_name.get(self._key(name))

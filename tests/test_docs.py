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
"""The documentation runs: every ```` ```python ```` block of every `docs/*.md` page is executed, and the family
table of `docs/families.md` matches the registry.

- A new page under `docs/` is picked up automatically; each block is one test (`docs/<page>.md:<line>`).
- Each block runs as a script in a fresh namespace, in a temporary working directory, so files it writes go away.
  Blocks state their results with `assert`.
- Registrations a block makes (families, frames, box syntaxes, prompt styles, rewards, metrics: the module-level
  `_UPPER_CASE` dicts of `trl_perception`) are rolled back after it (`isolated_registries` in `tests/conftest.py`),
  so blocks can neither leak into each other nor into other tests.
- Opt-out: a block whose info string is ```` ```python no-run ```` is only compiled (a syntax check), never run. Use it
  for examples that need real checkpoints, data or GPUs, and say on the page what the block needs. Any other word
  after `python` is an error, so a typo cannot silently skip a block.
- A worked example over several blocks: a block marked ```` ```python continue ```` runs in the namespace of the
  Python block before it on the page (its registrations kept), as part of the same test; registrations are rolled back
  after the last block of the chain.
"""

import re
from pathlib import Path

import pytest

from trl_perception.families import get_family, list_families


ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
FLAGS = {"no-run", "continue"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")


def code_blocks(path: Path) -> list[tuple[int, str, set[str], str]]:
    """Fenced blocks of a Markdown page: `(first code line, language, flags, code)`, code dedented by the fence's
    indentation."""
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        words = opening["info"].split()
        start, body = i + 1, []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            same_fence = closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence)
            if same_fence and not closing["info"]:
                break
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        else:
            raise AssertionError(f"{path.name}:{start}: unclosed code fence")
        i += 1
        language = words[0].lower() if words else ""
        blocks.append((start + 1, language, set(words[1:]), "\n".join(body) + "\n"))
    return blocks


def python_blocks():
    """One param per chain of blocks: a block and the `continue` blocks after it, as `[(line, flags, code), ...]`."""
    for page in PAGES:
        chains: list[list[tuple[int, set[str], str]]] = []
        for line, language, flags, code in code_blocks(page):
            if language in ("python", "py"):
                if "continue" in flags and chains:
                    chains[-1].append((line, flags, code))
                else:
                    chains.append([(line, flags, code)])
        for chain in chains:
            line, flags, _ = chain[0]
            yield pytest.param(page, line, flags, chain, id=f"{page.relative_to(ROOT).as_posix()}:{line}")


@pytest.fixture
def isolated(tmp_path, monkeypatch, isolated_registries):
    """A temporary working directory, and every registry rolled back afterwards (`tests/conftest.py`)."""
    monkeypatch.chdir(tmp_path)


def test_docs_pages_have_runnable_examples():
    assert (ROOT / "docs" / "families.md") in PAGES
    params = list(python_blocks())
    runnable = [p for p in params if "no-run" not in p.values[2]]
    assert len(runnable) >= 5, "docs/families.md has at least five runnable examples"


@pytest.mark.parametrize("page, line, flags, chain", list(python_blocks()))
def test_python_block(page, line, flags, chain, isolated):
    namespace = {"__name__": f"docs.{page.stem}"}
    for block_line, block_flags, code in chain:
        unknown = block_flags - FLAGS
        assert not unknown, (
            f"{page.name}:{block_line}: unknown code-block flag(s) {sorted(unknown)}; allowed: {sorted(FLAGS)}"
        )
        # Blank lines up front keep the page's line numbers in tracebacks.
        compiled = compile("\n" * (block_line - 1) + code, str(page), "exec")
        if "no-run" not in flags and "no-run" not in block_flags:  # a chain that starts unrun stays unrun
            exec(compiled, namespace)


def test_blocks_leave_no_registration_behind(isolated):
    """What the isolation fixture guarantees: a registration inside a test is gone after it (checked in the next)."""
    from trl_perception.families import ModelFamily, register_family

    register_family(
        ModelFamily("leak_check_vl", ("leak_check_vl",), "grid_1000", "json", "qwen3_vl", patch_size=16, merge_size=2)
    )
    assert "leak_check_vl" in list_families()


def test_no_registration_leaked():
    assert "leak_check_vl" not in list_families()
    assert "toy_vl" not in list_families()


# ----------------------------------------------------------------------------------------- the family table


def _cells(row: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", row.strip().removeprefix("|").removesuffix("|"))
    return [cell.strip().replace("\\|", "|") for cell in cells]


def _spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _ints(cell: str) -> list[int]:
    return [int(v.replace(",", "")) for v in re.findall(r"\d[\d,]*", cell)]


def family_table() -> list[dict[str, str]]:
    """Rows of the table in docs/families.md whose first header cell is `family`."""
    lines = (ROOT / "docs" / "families.md").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| family |") and i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: "):
            header = _cells(line)
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(header, _cells(row), strict=True)))
            return rows
    raise AssertionError("docs/families.md has no table starting with `| family |`")


def test_family_table_matches_the_registry():
    rows = {_spans(row["family"])[0]: row for row in family_table()}
    assert list(rows) == list_families()  # every built-in family, in registration order
    for name, row in rows.items():
        spec = get_family(name)
        assert tuple(_spans(row["`model_type`"])) == spec.model_types, name
        assert _spans(row["box frame"]) == [spec.box_frame], name
        assert _spans(row["answer syntax"])[0] == spec.box_syntax, name
        assert _ints(row["patch × merge"]) == [spec.patch_size, spec.merge_size, spec.factor], name
        pixels = row["default min / max pixels"]
        if spec.pixel_budget_keys is None:
            tile = _ints(pixels)
            assert "fixed" in pixels and tile[0] * tile[1] == spec.min_pixels == spec.max_pixels, name
        else:
            assert _ints(pixels) == [spec.min_pixels, spec.max_pixels], name
        assert _spans(row["prompt style"]) == [spec.prompt_style], name
        assert tuple(_spans(row["vision tokens"])) == spec.vision_tokens, name


# ------------------------------------------------------------------------------------------------- links


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name}: broken link {target!r}"

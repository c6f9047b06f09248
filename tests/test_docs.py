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
import tomllib
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
    """A temporary working directory and Arrow cache, and every registry rolled back afterwards
    (`tests/conftest.py`)."""
    import datasets.config

    monkeypatch.chdir(tmp_path)
    # Builders read the default cache root when they are built, so the dataset examples cache under the test's folder.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets_cache")


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


# README sections another page is taking over: their examples are not required to be on a docs page yet. Empty this
# set once the section has moved.
README_SECTIONS_PENDING: set[str] = set()


def readme_python_blocks() -> list[tuple[int, str]]:
    """`(line, code)` of the README's Python blocks, outside the sections in `README_SECTIONS_PENDING`."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    section_of_line, section = {}, None
    fence = False
    for number, line in enumerate(lines, start=1):
        fence = fence != bool(_FENCE.match(line))
        if not fence and line.startswith("## "):
            section = line[3:].strip()
        section_of_line[number] = section
    return [
        (line, code)
        for line, language, _, code in code_blocks(ROOT / "README.md")
        if language in ("python", "py") and section_of_line[line] not in README_SECTIONS_PENDING
    ]


def test_readme_examples_are_run_on_a_docs_page():
    """The README is not executed itself (it is also the package description); each of its Python examples is a
    verbatim copy of a block that runs on a docs page."""
    executed = {code for page in PAGES for _, language, flags, code in code_blocks(page) if "no-run" not in flags}
    blocks = readme_python_blocks()
    assert blocks, "the README has a minimal example"
    missing = [line for line, code in blocks if code not in executed]
    assert not missing, f"README.md lines {missing}: copy the block verbatim from (or to) an executed docs/ block"


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

# The README is also the package's long description on the package index, where relative links do not resolve: it
# links to files of the repository by absolute URL, under the project's `Source` URL (pyproject.toml).
SOURCE_URL = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]["Source"]
REPOSITORY_FILE = re.compile(re.escape(SOURCE_URL) + r"/(?:blob|tree)/main/(?P<path>[^#]*)(?P<anchor>#.*)?$")
# Pages linked before they exist (none today); each is checked like any other page as soon as it exists.
PENDING_PAGES: set[str] = set()
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _prose(text: str) -> str:
    """The page without its fenced code blocks (a `](` in code is no link)."""
    return re.sub(r"^(`{3,}|~{3,})[^\n]*\n.*?^\1[ \t]*$", "", text, flags=re.MULTILINE | re.DOTALL)


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page: lower case, punctuation (backticks included)
    dropped, spaces as hyphens, `-1`, `-2`, ... for repeated headings."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", _prose(path.read_text(encoding="utf-8")), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def test_heading_anchors_follow_github():
    page = ROOT / "docs" / "families.md"
    assert {"qwen35-and-thinking", "how-familyauto-resolves", "adding-a-model-family"} <= heading_anchors(page)


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_resolve(page):
    """Every link to a file of the repository points at an existing file, and every `#anchor` at a heading of it."""
    broken = []
    for target in (m["target"] for m in _LINK.finditer(_prose(page.read_text(encoding="utf-8")))):
        repository_file = REPOSITORY_FILE.match(target)
        if repository_file:
            path, anchor = ROOT / repository_file["path"], (repository_file["anchor"] or "#")[1:]
        elif re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # another site
        else:
            if page.name == "README.md" and not target.startswith("#"):
                broken.append(
                    f"{target!r}: the README links to repository files by absolute URL ({SOURCE_URL}/blob/main/...)"
                )
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
        relative = path.resolve().relative_to(ROOT).as_posix() if path.resolve().is_relative_to(ROOT) else str(path)
        if not path.exists():
            if relative not in PENDING_PAGES:
                broken.append(f"{target!r}: no file {relative}")
        elif anchor and (path.suffix != ".md" or anchor not in heading_anchors(path)):
            broken.append(f"{target!r}: no heading #{anchor} in {relative}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)

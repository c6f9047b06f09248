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
"""The sdist and the wheel carry the Apache-2.0 LICENSE, the project URLs and the recipes; the sdist's recipe tests run
from it; and the wheel, installed into a fresh virtual environment without the lockfile, trains the quickstart by name
in an empty folder and evaluates the result."""

import email
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from trl_perception.shipped_recipes import RECIPES_DIR


ROOT = Path(__file__).resolve().parents[1]
URL = "https://github.com/trl-perception/trl-perception"
# The packages whose versions the dependency ranges cap at the locked release series (pyproject.toml).
CAPPED = ["torch", "torchvision", "transformers", "trl", "huggingface-hub", "accelerate", "datasets"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str, str]:
    """`(dist folder, sdist name, wheel name)`, built from a copy of the source tree."""
    tmp_path = tmp_path_factory.mktemp("build")
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "runs", ".*cache")
    shutil.copytree(ROOT, source, ignore=ignore, symlinks=True)
    dist = tmp_path / "dist"
    build = (
        "import sys; from setuptools import build_meta as b; out = sys.argv[1]; "
        "sdist = b.build_sdist(out); wheel = b.build_wheel(out); print('BUILT', sdist, wheel)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", build, str(dist)], cwd=source, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, sdist_name, wheel_name = next(line for line in proc.stdout.splitlines() if line.startswith("BUILT ")).split()
    return dist, sdist_name, wheel_name


def test_license_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text


def test_sdist_and_wheel_ship_the_license_and_project_urls(built):
    dist, sdist_name, wheel_name = built
    with tarfile.open(dist / sdist_name) as sdist:
        top = sdist_name[: -len(".tar.gz")]
        assert f"{top}/LICENSE" in sdist.getnames()
        sdist_metadata = email.message_from_bytes(sdist.extractfile(f"{top}/PKG-INFO").read())
    with zipfile.ZipFile(dist / wheel_name) as wheel:
        info = next(name.split("/")[0] for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
        assert wheel.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        wheel_metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))

    for metadata in (sdist_metadata, wheel_metadata):
        assert metadata["License-Expression"] == "Apache-2.0"
        assert metadata.get_all("License-File") == ["LICENSE"]
        urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL"))
        assert urls["Source"] == URL
        assert urls["Issues"] == f"{URL}/issues"
        assert urls["Documentation"].startswith(URL)


def shipped_files() -> dict[str, bytes]:
    """The recipes and accelerate configs, by path inside the package."""
    return {f"recipes/{p.relative_to(RECIPES_DIR).as_posix()}": p.read_bytes() for p in RECIPES_DIR.rglob("*.yaml")}


def test_sdist_and_wheel_ship_the_recipes(built):
    dist, sdist_name, wheel_name = built
    shipped = shipped_files()
    assert {"recipes/quickstart.yaml", "recipes/accelerate/zero2_cpu.yaml"} <= set(shipped)
    with zipfile.ZipFile(dist / wheel_name) as wheel:
        for name, data in shipped.items():
            assert wheel.read(f"trl_perception/{name}") == data, name
    top = sdist_name[: -len(".tar.gz")]
    with tarfile.open(dist / sdist_name) as sdist:
        for name, data in shipped.items():
            assert sdist.extractfile(f"{top}/trl_perception/{name}").read() == data, name
        # The sdist's tests have their fixtures.
        assert f"{top}/tests/conftest.py" in sdist.getnames()


def unpack_sdist(built, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The unpacked sdist and an environment in which its own `trl_perception` is the one imported."""
    dist, sdist_name, _ = built
    with tarfile.open(dist / sdist_name) as sdist:
        sdist.extractall(tmp_path, filter="data")
    root = tmp_path / sdist_name[: -len(".tar.gz")]
    env = {**os.environ, "PYTHONPATH": str(root)}
    where = subprocess.run(
        [sys.executable, "-c", "import trl_perception; print(trl_perception.__file__)"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(root), where.stdout + where.stderr
    return root, env


def test_the_sdist_recipe_tests_collect_every_recipe(built, tmp_path):
    root, env = unpack_sdist(built, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/test_recipes.py"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = proc.stdout.splitlines()
    for recipe in sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")):
        assert f"tests/test_recipes.py::test_recipe_parses_and_names_registered_rewards[{recipe}]" in collected
        assert f"tests/test_recipes.py::test_recipe_agrees_with_the_family_layer[{recipe}]" in collected


@pytest.mark.slow
def test_the_sdist_recipe_tests_pass(built, tmp_path):
    root, env = unpack_sdist(built, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "tests/test_recipes.py"],
        cwd=root, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


# -- the wheel, installed without the lockfile -------------------------------------------------------------------------


def locked_versions() -> dict[str, str]:
    """The CI versions of the capped packages: uv.lock's in a clone, else this test environment's."""
    lock = ROOT / "uv.lock"
    if lock.is_file():
        packages = tomllib.loads(lock.read_text())["package"]
        return {p["name"]: p["version"] for p in packages if p["name"] in CAPPED}
    return {name: importlib.metadata.version(name) for name in CAPPED}


def uv_command() -> list[str] | None:
    """uv (`uv run` names itself in $UV), if there is one."""
    for candidate in (os.environ.get("UV"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return [candidate]
    try:
        import uv  # noqa: F401  (the `uv` package from PyPI)
    except ImportError:
        return None
    return [sys.executable, "-m", "uv"]


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def install_wheel(wheel: Path, venv: Path, cwd: Path, env: dict[str, str]) -> str:
    """A fresh virtual environment with the wheel and its dependencies, resolved from the index (no lockfile); offline
    from uv's cache when the index cannot be reached. Returns the installer's log."""
    uv = uv_command()
    if uv is None:  # pip: slower (no cache of the locked environment), same resolution
        log = run([sys.executable, "-m", "venv", str(venv)], cwd, env, 300)
        assert log.returncode == 0, log.stderr[-3000:]
        proc = run([str(venv / "bin" / "python"), "-m", "pip", "install", str(wheel)], cwd, env, 3600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr
    proc = run([*uv, "venv", "--no-config", "--python", sys.executable, str(venv)], cwd, env, 300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    install = [*uv, "pip", "install", "--no-config", "--python", str(venv / "bin" / "python"), str(wheel)]
    proc = run(install, cwd, env, 3600)
    if proc.returncode != 0:  # no index: the same resolution from uv's cache
        offline = run([*install, "--offline"], cwd, env, 3600)
        assert offline.returncode == 0, proc.stderr[-3000:] + "\n--- offline:\n" + offline.stderr[-3000:]
        proc = offline
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_wheel_installed_without_the_lock_trains_and_evaluates_the_quickstart_by_name(built, tmp_path):
    dist, _, wheel_name = built
    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    log = install_wheel(dist / wheel_name, venv, work, env)
    env.update(PATH=os.pathsep.join([str(venv / "bin"), env.get("PATH", "")]), HF_HUB_OFFLINE="1")
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "trl-perception")

    # The installed package, not this checkout, and the dependency versions the caps allow: the locked series.
    probe = (
        "import importlib.metadata as m, json, trl_perception.shipped_recipes as r; "
        f"print(json.dumps({{'file': r.__file__, 'versions': {{n: m.version(n) for n in {CAPPED!r}}}}}))"
    )
    proc = run([python, "-c", probe], work, env, 300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = json.loads(proc.stdout)
    assert Path(installed["file"]).is_relative_to(venv), installed["file"]
    for name, locked in locked_versions().items():
        got, want = Version(installed["versions"][name]), Version(locked)
        assert (got.major, got.minor) == (want.major, want.minor), (name, str(got), str(want), log[-2000:])

    # The quickstart, by name, in an empty folder (shortened: 2 warm-start and 2 GRPO steps, 8 held-out rows).
    train = [cli, "train", "--config", "quickstart", "--max_steps", "2", "--warmstart_steps", "2",
             "--heldout_samples", "8", "--dataset_kwargs", '{"num_train": 64, "num_test": 8}', "--disable_tqdm", "true"]  # fmt: skip
    proc = run(train, work, env, 1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert "[held-out after]" in proc.stdout
    out = work / "runs" / "quickstart"  # the recipe's output_dir, relative to the folder it ran in
    assert sorted(p.name for p in work.iterdir()) == ["runs"]
    for name in ("model.safetensors", "metrics.json", "reward_curve.png"):
        assert (out / name).stat().st_size > 0
    after = json.loads((out / "metrics.json").read_text())["summary"]["heldout"]["after"]

    # `trl-perception eval` on its output, over the same 8 held-out rows of the recipe's data.
    proc = run([cli, "recipes", "show", "quickstart"], work, env, 300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recipe = yaml.safe_load(proc.stdout)
    data = {**recipe["dataset_kwargs"], "num_train": 64, "num_test": 8}
    builder_args = [arg for key, value in data.items() for arg in ("--builder-arg", f"{key}={json.dumps(value)}")]
    evaluate = [cli, "eval", "--task", "counting", "--model", "runs/quickstart", "--dataset", recipe["dataset_name"],
                "--split", recipe["dataset_test_split"], *builder_args, "--device", "cpu", "--no-progress",
                "--max-new-tokens", str(recipe["heldout_max_new_tokens"]), "--output-dir", "eval"]  # fmt: skip
    proc = run(evaluate, work, env, 900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    result = json.loads((work / "eval" / "metrics.json").read_text())
    assert result["num_samples"] == after["n"] == 8
    # Greedy decoding of the same rows by the same checkpoint: eval's accuracy is training's held-out score.
    assert result["metrics"]["accuracy"] == pytest.approx(after["rewards"]["count_exact"])

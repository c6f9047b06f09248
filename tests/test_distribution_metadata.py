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
"""The sdist and the wheel carry the Apache-2.0 LICENSE and the project URLs."""

import email
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
URL = "https://github.com/trl-perception/trl-perception"


def test_license_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text


def test_sdist_and_wheel_ship_the_license_and_project_urls(tmp_path):
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "runs", ".*cache")
    shutil.copytree(ROOT, source, ignore=ignore)
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

"""The page's own JavaScript stays small: under 60 KB once minified and gzipped.

Measured as a browser would get it from a build: every module of web/js bundled from the
page's entry points and minified by esbuild (from npm, at a pinned version), the vendored
libraries (web/vendor) left out as external, then gzip at level 9 here. The figure is
printed (``pytest -s``) so that a change's cost can be read off the test run.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from tests.support.packages import cached_npm_package
from tests.support.server import ROOT

ESBUILD_VERSION = "0.28.2"
LIMIT_BYTES = 60 * 1024
WEB_JS = ROOT / "web" / "js"
# The page loads these itself (web/index.html): the module graph, and the classic script
# that sets the theme before the first paint.
ENTRY_POINTS = ("app.js", "theme-boot.js")


@pytest.fixture(scope="module")
def esbuild() -> Path:
    return cached_npm_package("esbuild", ESBUILD_VERSION) / "bin" / "esbuild"


def minified(esbuild: Path, entry: str, out: Path) -> tuple[bytes, set[str]]:
    """The bundle of ``entry``, minified, and the page files it holds."""
    meta = out.with_suffix(".meta.json")
    subprocess.run(
        [
            str(esbuild),
            str(WEB_JS / entry),
            "--bundle",
            "--minify",
            "--format=esm",
            "--target=es2022",
            "--external:../vendor/*",
            f"--outfile={out}",
            f"--metafile={meta}",
            "--log-level=warning",
        ],
        check=True,
        cwd=ROOT,
    )
    inputs = json.loads(meta.read_text(encoding="utf-8"))["inputs"]
    return out.read_bytes(), {Path(name).name for name in inputs}


def test_the_pages_own_javascript_is_under_60_kb_minified_and_gzipped(
    esbuild: Path, tmp_path: Path
) -> None:
    total = b""
    bundled: set[str] = set()
    for entry in ENTRY_POINTS:
        code, files = minified(esbuild, entry, tmp_path / entry)
        total += code
        bundled |= files
    # Every module of the page is in the measure: none is loaded some other way.
    assert bundled == {path.name for path in WEB_JS.glob("*.js")}
    source = sum(path.stat().st_size for path in WEB_JS.glob("*.js"))
    packed = len(gzip.compress(total, compresslevel=9))
    print(
        f"\npage JavaScript: {source} bytes of source, {len(total)} minified,"
        f" {packed} minified and gzipped ({packed / 1024:.1f} KB of {LIMIT_BYTES // 1024} KB)"
    )
    assert packed < LIMIT_BYTES

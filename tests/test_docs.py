"""The documentation site (mkdocs.yml, docs/) documents every public name.

The site's inventory, `site/objects.inv`, lists every object the API
reference renders. Each public module has a page (`docs/reference/*.md`,
each holding `::: keras_crl.NAME`), and each name of its `__all__` (without
`__all__`, each class and function it defines) is in the inventory: a name
added to `__all__` but hidden from the site, or a public module without a
page, fails here. `make docs` builds the site (strictly: a stale name in a
cross-reference fails the build itself); when site/ is missing or older than
what it is built from, this test builds it into a temporary folder.
"""

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import keras_crl

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
# Public modules without an API page, and why.
NOT_IN_REFERENCE = {
    "keras_crl.backends": "starts one process per backend for compare and the study",
    "keras_crl.cli": "the command, documented in docs/guide/cli.md",
}
# What the site is built from: a site/ older than any of these is stale.
SOURCES = ("mkdocs.yml", "docs", "keras_crl", "benchmarks/results", "reports")
# One line of a Sphinx inventory: name, domain:role, priority, uri, display name.
INVENTORY_LINE = re.compile(r"(.+?)\s+(\S+?:\S+)\s+(-?\d+)\s+(\S*)\s+(.*)")


def read_inventory(path):
    """The object names of a Sphinx inventory (version 2) file."""
    with open(path, "rb") as f:
        header = [f.readline() for _ in range(4)]
        if not header[0].startswith(b"# Sphinx inventory version 2"):
            raise ValueError(f"{path} is not a version 2 Sphinx inventory: {header[0]!r}")
        # Four header lines, then the entries, zlib-compressed, one a line.
        text = zlib.decompress(f.read()).decode()
    return {INVENTORY_LINE.match(line).group(1) for line in text.splitlines() if line.strip()}


def newest_source():
    times = []
    for name in SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else path.rglob("*")
        times.extend(f.stat().st_mtime for f in files if f.is_file())
    return max(times)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    built = ROOT / "site" / "objects.inv"
    if built.exists() and built.stat().st_mtime >= newest_source():
        return read_inventory(built)
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr[-4000:]}"
    return read_inventory(site / "objects.inv")


def documented_modules():
    """The module each API page renders: its first `::: NAME` line."""
    modules = {}
    for page in sorted(REFERENCE.glob("*.md")):
        found = re.search(r"^::: (\S+)", page.read_text(), re.MULTILINE)
        assert found, f"{page} renders no module (`::: keras_crl.NAME`)"
        modules[found.group(1)] = page
    return modules


def public_names(module):
    """`__all__`, or the public classes and functions of the module or its package.

    Without `__all__`, a package's names imported from its submodules are
    public to Python but not to the site's reader (griffe), so they are
    checked too: they fail until `__all__` lists them.
    """
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and f"{obj.__module__}.".startswith(f"{module.__name__}.")
    ]


def documented_as(module, name):
    """Where the site may list a public name: its path here, or where it is defined."""
    paths = [f"{module.__name__}.{name}"]
    obj = getattr(module, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        paths.append(f"{obj.__module__}.{obj.__qualname__}")
    return paths


@pytest.mark.once_per_suite
def test_every_public_module_has_a_page():
    top_level = {
        f"keras_crl.{info.name}"
        for info in pkgutil.iter_modules(keras_crl.__path__)
        if not info.name.startswith("_")
    }
    missing = sorted(top_level - set(documented_modules()) - set(NOT_IN_REFERENCE))
    assert not missing, (
        f"public modules without an API page: {missing}; add docs/reference/NAME.md "
        "holding `::: keras_crl.NAME` and list it in mkdocs.yml's nav"
    )


@pytest.mark.once_per_suite
@pytest.mark.parametrize("module_name", sorted(documented_modules()))
def test_every_public_name_is_in_the_reference(module_name, inventory):
    module = importlib.import_module(module_name)
    names = public_names(module)
    assert names, f"{module_name} has no public name to document"
    missing = [
        name for name in names if not any(path in inventory for path in documented_as(module, name))
    ]
    assert not missing, (
        f"{module_name}: {missing} are public but not in the site's API reference "
        f"({documented_modules()[module_name].relative_to(ROOT)}); the site shows what "
        "`__all__` lists, and without `__all__` what the module itself defines"
    )


@pytest.mark.once_per_suite
def test_read_inventory_rejects_other_files(tmp_path):
    path = tmp_path / "objects.inv"
    path.write_bytes(b"# Sphinx inventory version 1\n# Project: x\n# Version: 0\nx py:class\n")
    with pytest.raises(ValueError, match="not a version 2"):
        read_inventory(path)


def _doctest_blocks():
    spec = importlib.util.spec_from_file_location(
        "doctest_blocks", ROOT / "docs" / "tools" / "doctest_blocks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.once_per_suite
def test_keras_style_docstrings_are_read_as_written():
    # The site's griffe extension (docs/tools/doctest_blocks.py): `>>>` runs
    # fenced, grouped argument names split, nothing else touched.
    extension = _doctest_blocks()
    docstring = [
        "Args:",
        "    model: A name.",
        "    x, y: Images and labels",
        "        of the training split.",
        "    epochs, batch_size,",
        "    augment: Recipe overrides.",
        "",
        "Returns:",
        "    a, b: prose, not names.",
        "",
        "Example:",
        "",
        ">>> 1 + 1",
        "2",
        "",
        "Done.",
    ]
    assert extension.fence_doctests(extension.split_grouped_args(docstring)) == [
        "Args:",
        "    model: A name.",
        "    x: Images and labels",
        "        of the training split.",
        "    y: Images and labels",
        "        of the training split.",
        "    epochs: Recipe overrides.",
        "    batch_size: Recipe overrides.",
        "    augment: Recipe overrides.",
        "",
        "Returns:",
        "    a, b: prose, not names.",
        "",
        "Example:",
        "",
        "```pycon",
        ">>> 1 + 1",
        "2",
        "```",
        "",
        "Done.",
    ]

"""The three distributions: names, versions, licences, typing markers, the llama_index namespace,
the clone-relative engine dependency of the integrations, and the source-tree import message."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = {  # distribution -> (project directory, import name)
    "pomaidb-core": (REPO, "pomaidb_core"),
    "langchain-pomaidb": (REPO / "integrations" / "langchain", "langchain_pomaidb"),
    "llama-index-vector-stores-pomaidb": (REPO / "integrations" / "llama_index",
                                          "llama_index.vector_stores.pomaidb"),
}


def _project(directory: Path) -> dict:
    with open(directory / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]


def _wheel_files(name: str) -> set[str]:
    """The files a regular (wheel) install of `name` put in site-packages."""
    direct_url = md.distribution(name).read_text("direct_url.json")
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        pytest.skip(f"{name} is an editable install; a regular install (as in CI) checks its wheel")
    return {str(f) for f in md.files(name) or []}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_each_distribution_is_installed_under_its_name_with_its_single_sourced_version(name):
    directory, module_name = DISTRIBUTIONS[name]
    module = __import__(module_name, fromlist=["__version__"])
    assert _project(directory)["name"] == name
    assert "version" in _project(directory)["dynamic"]  # read from the package's __version__
    assert module.__version__ == md.version(name)


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_each_wheel_ships_the_py_typed_marker(name):
    _, module_name = DISTRIBUTIONS[name]
    assert f"{module_name.replace('.', '/')}/py.typed" in _wheel_files(name)


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_each_distribution_ships_the_apache_licence_it_declares(name):
    directory, _ = DISTRIBUTIONS[name]
    project = _project(directory)
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (directory / "LICENSE").read_text()
    assert text == (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert md.metadata(name)["License-Expression"] == "Apache-2.0"
    assert {"Homepage", "Repository"} <= {u.split(",")[0] for u in md.metadata(name).get_all("Project-URL")}


def test_the_engine_wheel_ships_no_integration():
    files = {f.split("/")[0] for f in _wheel_files("pomaidb-core")}
    assert "pomaidb_core" in files
    assert not files & {"langchain_pomaidb", "llama_index", "integrations"}


def test_the_llamaindex_wheel_keeps_the_llama_index_namespace_intact():
    import llama_index
    import llama_index.core
    import llama_index.vector_stores

    files = _wheel_files("llama-index-vector-stores-pomaidb")
    assert "llama_index/vector_stores/pomaidb/__init__.py" in files
    assert not files & {"llama_index/__init__.py", "llama_index/vector_stores/__init__.py"}
    assert getattr(llama_index, "__file__", None) is None  # still a namespace package
    assert getattr(llama_index.vector_stores, "__file__", None) is None


@pytest.mark.parametrize("name", ["langchain-pomaidb", "llama-index-vector-stores-pomaidb"])
def test_an_integration_takes_the_engine_from_its_clone_unless_a_release_names_a_version(
        name, monkeypatch):
    """The dependency is `pomaidb-core @ file://<repository root>` when built in a clone and
    `pomaidb-core<specifier>` when POMAIDB_CORE_REQUIREMENT is set (CONTRIBUTING.md, Releasing)."""
    metadata = pytest.importorskip("hatchling.metadata.core")
    directory, _ = DISTRIBUTIONS[name]

    def engine_requirement() -> str:
        project = metadata.ProjectMetadata(str(directory), None)
        return next(d for d in project.core.dependencies if d.startswith("pomaidb-core"))

    monkeypatch.delenv("POMAIDB_CORE_REQUIREMENT", raising=False)
    assert engine_requirement() == f"pomaidb-core @ {REPO.as_uri()}"
    monkeypatch.setenv("POMAIDB_CORE_REQUIREMENT", ">=0.1.0")
    assert engine_requirement() == "pomaidb-core>=0.1.0"


def test_importing_from_the_source_tree_says_what_to_do():
    if any(p.name.startswith("_kernels.") for p in (REPO / "pomaidb_core").iterdir()):
        pytest.skip("the extension is built in place in this checkout")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", "import pomaidb_core"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    if result.returncode == 0:
        pytest.skip("an editable install maps the source tree to a built extension")
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: pomaidb_core was imported from its source tree")
    assert "python3 -m pip install ." in last and "-e ." in last
    assert "circular import" not in last

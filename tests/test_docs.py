"""The shipped reference: every public name has a docstring, the MkDocs site builds with
--strict, and nothing shipped points at files users do not have (the ../shared directory)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pomaidb_core as pdb

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["pomaidb_core", "integrations", "docs", "examples", "README.md", "CONTRIBUTING.md",
           "mkdocs.yml", "pyproject.toml"]


def undocumented(owner: object, label: str) -> list[str]:
    """`label` and its public methods and properties (defined on it, not inherited) without a docstring."""
    missing = [] if (inspect.getdoc(owner) or "").strip() else [label]
    if inspect.isclass(owner):
        for name, value in vars(owner).items():
            if name.startswith("_"):
                continue
            target = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            if (callable(target) or isinstance(value, property)) and not (target.__doc__ or "").strip():
                missing.append(f"{label}.{name}")
    return missing


def public_names(module) -> list[tuple[object, str]]:
    return [(getattr(module, n), f"{module.__name__}.{n}") for n in module.__all__
            if n != "__version__"]


def test_every_public_engine_name_and_method_has_a_docstring():
    missing = [m for owner, label in public_names(pdb) for m in undocumented(owner, label)]
    assert missing == []


def test_the_internal_db_plumbing_is_private():
    for name in ("broadcast", "abroadcast", "call", "acall", "scan_shards", "submit"):
        assert not hasattr(pdb.DB, name), name


def test_every_public_integration_name_and_method_has_a_docstring():
    langchain_pomaidb = pytest.importorskip("langchain_pomaidb")
    llama = pytest.importorskip("llama_index.vector_stores.pomaidb")
    missing = [m for module in (langchain_pomaidb, llama)
               for owner, label in public_names(module) for m in undocumented(owner, label)]
    assert missing == []


def test_the_reference_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                             "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "site" / "reference" / "engine" / "index.html").read_text()
    assert "The k records most similar to" in page  # Membrane.search's docstring was rendered


def test_nothing_shipped_names_the_development_only_shared_directory():
    offenders = []
    for entry in SHIPPED:
        paths = [REPO / entry] if (REPO / entry).is_file() else (REPO / entry).rglob("*")
        for path in paths:
            if path.is_file() and path.suffix in {".py", ".md", ".yml", ".toml", ".txt"}:
                text = path.read_text(encoding="utf-8")
                if "../shared" in text or "shared/API.md" in text:
                    offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_the_readme_use_section_links_to_the_reference():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    use = readme[readme.index("## Use"):readme.index("\n## ", readme.index("## Use") + 1)]
    assert "docs/reference/engine.md" in use and len(use.splitlines()) < 45
    assert os.path.isfile(REPO / "docs" / "reference" / "engine.md")

"""pdb.open's backend argument, and the core install path never importing ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pomaidb_core as pdb


def test_the_local_backend_never_imports_ray(tmp_path):
    script = (
        "import sys, pomaidb_core as pdb\n"
        f"db = pdb.open({str(tmp_path / 'db')!r}, shards=2)\n"
        "m = db.create_membrane('docs', dim=3)\n"
        "m.put(1, [1, 2, 3]); m.search([1, 2, 3], 1); db.close()\n"
        "print('ray' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_an_unknown_backend_or_a_stray_ray_address_is_refused(tmp_path):
    with pytest.raises(pdb.InvalidArgumentError, match="backend"):
        pdb.open(tmp_path / "db", backend="spark")
    with pytest.raises(pdb.InvalidArgumentError, match="ray_address"):
        pdb.open(tmp_path / "db", ray_address="auto")
    assert not (tmp_path / "db").exists()

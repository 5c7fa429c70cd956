"""ISA selection: the best level by default, lowered by POMAIDB_ISA or use_isa, never raised."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError

LEVELS = ["scalar", "avx2", "avx512", "avx512vnni"]


def _import_with_env(value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POMAIDB_ISA": value}
    code = "from pomaidb_core import kernels; print(kernels.active_isa())"
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        env=env,
        cwd=tempfile.gettempdir(),  # `-c` puts the cwd first on sys.path: not the source tree
        capture_output=True,
        text=True,
        check=False,
    )


def test_available_levels_are_ordered_and_include_scalar():
    available = kernels.available_isas()
    assert available[0] == "scalar"
    assert available == [level for level in LEVELS if level in available]


def test_default_level_is_the_best_available():
    assert kernels.active_isa() == kernels.available_isas()[-1]


def test_use_isa_switches_and_restores():
    before = kernels.active_isa()
    with kernels.use_isa("scalar"):
        assert kernels.active_isa() == "scalar"
    assert kernels.active_isa() == before


def test_use_isa_rejects_unknown_levels():
    before = kernels.active_isa()
    with pytest.raises(InvalidArgumentError, match="not supported"), kernels.use_isa("sse9"):
        pass
    assert kernels.active_isa() == before


@pytest.mark.parametrize("level", kernels.available_isas())
def test_env_var_selects_a_supported_level(level):
    result = _import_with_env(level)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == level


MISSING = [level for level in LEVELS if level not in kernels.available_isas()]


@pytest.mark.parametrize("value", ["sse9", *MISSING])
def test_env_var_naming_a_missing_level_warns_and_keeps_the_best(value):
    result = _import_with_env(value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == kernels.available_isas()[-1]
    assert "RuntimeWarning" in result.stderr and "POMAIDB_ISA" in result.stderr

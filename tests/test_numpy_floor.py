"""The oldest numpy that pyproject.toml allows passes the unit, property and kernel tests.

Everywhere else the suite runs on whatever numpy is installed (the newest), so code that needs a
later numpy than `dependencies` claims would go unnoticed. This test builds a throwaway virtual
environment that sees this interpreter's packages (pytest, hypothesis, the build backend),
installs numpy==<floor> and this repository into it, and runs those tests there in a
subprocess. It needs PyPI (or the configured index) and is skipped only when that is unreachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before 3.11
    import tomli as tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = ["tests/unit", "tests/property", "tests/kernels"]
# Python code run in the venv first drops the import redirect of an editable install of this
# repository in the base interpreter's packages, as .ci/sanitize.sh does: the venv's own install
# (built here, beside numpy==<floor>) is the one under test.
NO_REDIRECT = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'ScikitBuild' not in type(f).__name__]; "


def numpy_floor() -> str:
    """X of the `numpy>=X` requirement in [project] dependencies that applies to this Python
    (one per Python, if environment markers ever give some Pythons a later floor)."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    (numpy,) = [r for r in map(Requirement, dependencies)
                if r.name == "numpy" and (r.marker is None or r.marker.evaluate())]
    (floor,) = [s.version for s in numpy.specifier if s.operator == ">="]
    return floor


def index_reachable() -> bool:
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/numpy/"
    try:
        urllib.request.urlopen(url, timeout=15).close()
    except OSError:  # URLError and timeouts are OSErrors
        return False
    return True


def run(args: list[str], timeout: int, cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout[-4000:] + result.stderr[-4000:]


def make_venv(root: str) -> str:
    """A venv at root whose own site-packages comes first and this interpreter's after it."""
    created = run([sys.executable, "-m", "venv", "--system-site-packages", root], 300,
                  os.path.dirname(root))
    assert created.returncode == 0, output(created)
    python = os.path.join(root, "bin", "python")
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = run([python, "-c", query], 60, root).stdout.strip()
    # When this interpreter is itself a venv, --system-site-packages reaches only the base
    # interpreter's packages; a .pth line appends ours after the new venv's own site-packages.
    ours = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    with open(os.path.join(site, "outer-environment.pth"), "w") as handle:
        handle.write("\n".join(ours) + "\n")
    return python


@pytest.mark.numpy_floor
@pytest.mark.slow
def test_unit_property_and_kernel_tests_pass_with_the_oldest_supported_numpy(tmp_path):
    floor = numpy_floor()
    work = str(tmp_path)
    python = make_venv(os.path.join(work, "venv"))
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    installed = run([*pip, "--only-binary=:all:", f"numpy=={floor}"], 600, work)
    if installed.returncode != 0 and not index_reachable():
        pytest.skip(f"cannot install numpy=={floor}: the package index is unreachable")
    assert installed.returncode == 0, (
        f"pip could not install numpy=={floor} for Python {sys.version.split()[0]}; if that numpy "
        "has no wheel for this Python, give it a later floor in pyproject.toml with an environment "
        "marker (numpy>=X; python_version >= '3.Y')\n" + output(installed))
    built = run([*pip, "--no-build-isolation", "--no-deps", REPO], 900, work)
    assert built.returncode == 0, output(built)

    # Run from outside the repository, so that `import pomaidb_core` finds the installed package.
    probe = run([python, "-c", NO_REDIRECT + "import numpy, pomaidb_core; "
                 "print(numpy.__version__); print(pomaidb_core.__file__)"], 60, work)
    assert probe.returncode == 0, output(probe)
    version, package = probe.stdout.split()
    assert Version(version) == Version(floor)
    assert package.startswith(os.path.join(work, "venv"))

    pytest_main = NO_REDIRECT + "import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    tests = run([python, "-c", pytest_main, "-q", "-p", "no:cacheprovider", "-c",
                 os.path.join(REPO, "pyproject.toml"), "--rootdir", REPO,
                 *(os.path.join(REPO, suite) for suite in SUITES)], 900, work)
    assert tests.returncode == 0, output(tests)
    assert " passed" in tests.stdout

"""The kernels built with AddressSanitizer + UndefinedBehaviorSanitizer (and -Werror) pass their tests.

Runs .ci/sanitize.sh, which builds cpp/ into build/asan with
-fsanitize=address,undefined -Wall -Wextra -Wconversion -Werror and runs
tests/kernels against that build; any sanitizer report or warning fails it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("cmake") is None,
                    reason="needs g++ and cmake")
def test_kernels_are_clean_under_asan_and_ubsan():
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(["bash", os.path.join(REPO, ".ci", "sanitize.sh")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert " passed" in result.stdout

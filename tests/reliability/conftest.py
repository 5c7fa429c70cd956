import os
import sys

import pytest

from pomaidb_core import fs

# Helper modules (powerloss.py, workload.py) live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _no_leftover_hooks():
    """A failed test must not leave a fault hook or observer behind for the next one."""
    yield
    fs.set_fault_hook(None)
    fs.set_observer(None)

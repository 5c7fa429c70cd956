"""PomaiDB: an embedded, durable vector database.

Public names only; the reference is docs/ (rendered with `mkdocs serve`), and every name here
carries its own docstring.
"""

import importlib as _importlib
import os as _os

__version__ = "0.1.0"


def _kernels_missing(error: ImportError) -> str:
    """Why the compiled `_kernels` extension did not import, and what to do about it."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    root = _os.path.dirname(here)
    built = any(name.startswith("_kernels.") for name in _os.listdir(here))
    if not built and _os.path.isfile(_os.path.join(root, "pyproject.toml")):
        return (
            f"pomaidb_core was imported from its source tree ({here}), where the C++ extension "
            "_kernels is not built (Python puts the current directory first on sys.path). "
            "Either install it with `python3 -m pip install .` and run from another directory "
            "(tests: plain `pytest`, not `python -m pytest`), or, to work on the sources, make an "
            "editable install that builds the extension: `python3 -m pip install "
            "--no-build-isolation -e .` (see CONTRIBUTING.md)."
        )
    return (
        f"pomaidb_core's compiled extension _kernels failed to load from {here}: {error}. "
        "Reinstall pomaidb-core for this Python and platform (`python3 -m pip install "
        "--force-reinstall pomaidb-core`, or `python3 -m pip install .` from a clone)."
    )


try:  # the C++ extension, imported first so that its absence is explained
    _importlib.import_module("._kernels", __name__)
except ImportError as _error:
    raise ImportError(_kernels_missing(_error)) from _error

from .db import DB, open  # noqa: E402
from .errors import (  # noqa: E402
    AlreadyExistsError,
    ClosedError,
    CorruptionError,
    InvalidArgumentError,
    LockedError,
    NotFoundError,
    PomaiError,
    ReadOnlyError,
    StorageError,
    UnavailableError,
)
from .membrane import Membrane  # noqa: E402
from .options import IndexParams, Options  # noqa: E402
from .repair import repair  # noqa: E402
from .results import Hit, Record  # noqa: E402

__all__ = [
    "DB",
    "AlreadyExistsError",
    "ClosedError",
    "CorruptionError",
    "Hit",
    "IndexParams",
    "InvalidArgumentError",
    "LockedError",
    "Membrane",
    "NotFoundError",
    "Options",
    "PomaiError",
    "ReadOnlyError",
    "Record",
    "StorageError",
    "UnavailableError",
    "__version__",
    "open",
    "repair",
]

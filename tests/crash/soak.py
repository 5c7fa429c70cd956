"""The crash soak, outside CI: thousands of SIGKILL rounds, then the figures.

    python -m tests.crash.soak --rounds 1000 [--seed S] [--sync all|always|batch|never] [--dir D]

Each round is one of rounds.py's: a multi-threaded writer (puts, overwrites,
deletes, batches, freezes, compactions) killed at a random time, at a random
file-system step or at a chosen one, under a random sync policy, then checked
against every write it acknowledged. Prints rounds, kills, acknowledged
operations checked and lost (0); on a loss it stops, exits 1 and names the
seed and the directory. `pytest -m soak` runs the same (POMAIDB_SOAK_ROUNDS,
POMAIDB_SOAK_SEED).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def _use_the_installed_package() -> None:
    """`python -m` puts the checkout first on sys.path, where pomaidb_core lacks its compiled
    kernels: test the installed package instead, as pytest does (--import-mode=importlib)."""
    checkout = os.path.dirname(os.path.dirname(HERE))
    sys.path[:] = [HERE] + [p for p in sys.path if os.path.abspath(p or ".") != checkout]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None, help="random by default (printed)")
    parser.add_argument("--sync", choices=("all", "always", "batch", "never"), default="all")
    parser.add_argument("--dir", default=None, help="work directory (a temporary one by default)")
    args = parser.parse_args(argv)
    _use_the_installed_package()
    from rounds import SYNC_POLICIES, SoakFailure, soak

    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    syncs = SYNC_POLICIES if args.sync == "all" else (args.sync,)
    workdir = args.dir or tempfile.mkdtemp(prefix="pomaidb-soak-")
    print(f"soak: {args.rounds} rounds, seed {seed}, sync {'/'.join(syncs)}, in {workdir}", flush=True)
    try:
        report = soak(args.rounds, seed, syncs, workdir, log=lambda line: print(line, flush=True))
    except SoakFailure as exc:
        print(f"SOAK FAILED: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    if args.dir is None:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

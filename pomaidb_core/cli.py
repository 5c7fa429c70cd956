"""The `pomaidb` command: `pomaidb bench {core,open,wsbr}`, `pomaidb stats PATH`, `pomaidb verify PATH`."""

from __future__ import annotations

import argparse
import json
import sys

from .db import open as open_db
from .errors import PomaiError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from . import bench

        bench.main(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="pomaidb")
    parser.add_argument("command", choices=["bench", "stats", "verify"])
    parser.add_argument("path")
    args = parser.parse_args(argv)
    try:
        with open_db(args.path, read_only=True) as db:
            if args.command == "stats":
                print(json.dumps(db.stats(), indent=2))
            else:
                db.verify()
                print(f"{args.path}: every checksum verified")
    except PomaiError as exc:
        print(f"pomaidb: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

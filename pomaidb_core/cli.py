"""The `pomaidb` command: inspect, maintain, move data in and out, and benchmark a database.

Every subcommand has its own `--help`. Reading commands (stats, verify, export) open the
database read-only, so they are safe while a writer runs; writing commands (compact, import,
import-chroma) take the single-writer lock and fail at once with LockedError if another
process holds it. Errors print one line, `pomaidb: ErrorType: message`, and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from . import __version__, chroma, transfer
from .db import open as open_db
from .errors import InvalidArgumentError, PomaiError
from .repair import repair as repair_database

Handler = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmarks parse their own arguments
        from . import bench

        bench.main(argv[1:])
        return 0
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except PomaiError as exc:
        print(f"pomaidb: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an output or input file outside the database
        print(f"pomaidb: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pomaidb", description="PomaiDB, an embedded vector database: command-line tools.",
        epilog="`pomaidb COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"pomaidb-core {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, summary: str) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=summary, description=summary)
        child.set_defaults(handler=handler)
        return child

    command("stats", _stats, "print per-membrane and per-shard statistics as JSON (read-only)"
            ).add_argument("path", help="database directory")
    command("verify", _verify, "read every file and check every checksum (read-only)"
            ).add_argument("path", help="database directory")
    command("compact", _compact, "merge each membrane's segments, dropping overwritten and "
            "deleted rows").add_argument("path", help="database directory")
    command("repair", _repair, "salvage every intact record of a damaged database into a "
            "consistent one; prints what was kept and dropped as JSON"
            ).add_argument("path", help="database directory")

    export = command("export", _export, "write a membrane's records (ids, vectors, metadata, "
                     "text) to a JSONL or Parquet file (read-only)")
    export.add_argument("path", help="database directory")
    export.add_argument("out", help="file to write")
    export.add_argument("--membrane", help="membrane to export (default: the only one)")
    _format_and_progress(export)

    load = command("import", _import, "load a file written by `pomaidb export` into a membrane, "
                   "creating it (and the database) if needed")
    load.add_argument("path", help="database directory")
    load.add_argument("source", metavar="in", help="file to read")
    load.add_argument("--membrane", help="target membrane (default: the name in the file)")
    load.add_argument("--shards", type=int, help="shard count of a new database (default 4)")
    _format_and_progress(load)

    migrate = command("import-chroma", _import_chroma, "copy every collection of a Chroma "
                      "database into membranes of the same names, then check the counts "
                      "(needs pomaidb-core[chroma])")
    migrate.add_argument("chroma_dir", help="directory of a persistent Chroma database")
    migrate.add_argument("db_path", help="PomaiDB directory to create or add to")
    migrate.add_argument("--batch-size", type=int, default=1000, help="records per read and write")
    migrate.add_argument("--no-progress", dest="progress", action="store_false",
                         help="no progress bars")

    sub.add_parser("bench", help="benchmarks: `pomaidb bench {core,open,wsbr,scale,text,ray} --help`",
                   add_help=False)
    return parser


def _format_and_progress(child: argparse.ArgumentParser) -> None:
    child.add_argument("--format", choices=transfer.FORMATS,
                       help="jsonl or parquet (default: from the file name, .parquet, else jsonl)")
    child.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bar")


def _stats(args: argparse.Namespace) -> int:
    with open_db(args.path, read_only=True) as db:
        print(json.dumps(db.stats(), indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    with open_db(args.path, read_only=True) as db:
        db.verify()
    print(f"{args.path}: every checksum verified")
    return 0


def _compact(args: argparse.Namespace) -> int:
    with open_db(args.path) as db:
        before = _segment_counts(db.stats())
        db.compact()
        after = _segment_counts(db.stats())
    for name in sorted(after):
        print(f"{name}: {before.get(name, (0, 0))[0]} segments -> {after[name][0]}, "
              f"{before.get(name, (0, 0))[1]:,} bytes -> {after[name][1]:,}")
    return 0


def _segment_counts(stats: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {name: (m["segments"], m["bytes_on_disk"]) for name, m in stats["membranes"].items()}


def _repair(args: argparse.Namespace) -> int:
    print(json.dumps(repair_database(args.path), indent=2, default=str))
    return 0


def _export(args: argparse.Namespace) -> int:
    fmt = transfer.format_for(args.out, args.format)
    with open_db(args.path, read_only=True) as db:
        name = args.membrane or _only_membrane(db.membranes(), args.path)
        written = transfer.export_membrane(db, name, args.out, fmt, progress=args.progress)
    print(f"exported {written:,} records of membrane {name!r} to {args.out} ({fmt})")
    return 0


def _only_membrane(names: list[str], path: str) -> str:
    if len(names) != 1:
        raise InvalidArgumentError(f"{path} holds membranes {names}; choose one with --membrane")
    return names[0]


def _import(args: argparse.Namespace) -> int:
    fmt = transfer.format_for(args.source, args.format)
    options = {} if args.shards is None else {"shards": args.shards}
    with open_db(args.path, **options) as db:
        name, written = transfer.import_file(db, args.source, fmt, membrane=args.membrane,
                                             progress=args.progress)
    print(f"imported {written:,} records into membrane {name!r} of {args.path}")
    return 0


def _import_chroma(args: argparse.Namespace) -> int:
    client = chroma.open_client(args.chroma_dir)
    with open_db(args.db_path) as db:
        reports = chroma.import_chroma(client, db, batch_size=args.batch_size,
                                       progress=args.progress)
    for report in reports:
        verdict = "ok" if report.ok else "COUNT MISMATCH"
        print(f"{report.name}: {report.chroma_count:,} in Chroma, {report.imported:,} imported, "
              f"{report.membrane_count:,} in the membrane (dim {report.dim}, metric "
              f"{report.metric}): {verdict}")
    print(f"{len(reports)} collection(s) copied from {args.chroma_dir} to {args.db_path}")
    return 0 if all(report.ok for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The `pomaidb` command: help for every subcommand, maintenance commands against the library's
own answers, a lossless export/import round trip (JSONL and Parquet), repair's report, and
benchmarks that never end in a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import cli, transfer

COMMANDS = ["stats", "verify", "compact", "repair", "export", "import", "import-chroma", "bench"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def make_db(path, shards: int = 2) -> None:
    """Two membranes, two frozen generations (so compaction has work), edge-case ids and metadata."""
    rng = np.random.default_rng(7)
    with pdb.open(path, shards=shards, auto_compact=False) as db:
        docs = db.create_membrane("docs", dim=5, metric="cosine",
                                  index=pdb.IndexParams(wsbr_top_blocks=3))
        ids = [0, 1, 2**64 - 1, 12345678901234567890, *range(10, 60)]
        vectors = rng.standard_normal((len(ids), 5)).astype(np.float32)
        vectors[0] = [1 / 3, -0.0, 1e-38, 1e18, -7.25]  # tiny, huge and inexact float32 values
        metadatas = [{"i": i, "tag": f"t{i % 3}", "nested": {"a": [1, 2.5, None]}, "u": "é✓"}
                     for i in range(len(ids))]
        metadatas[1] = None
        docs.put_batch(ids[:30], vectors[:30], metadatas[:30])
        db.freeze()
        docs.put_batch(ids[30:], vectors[30:], metadatas[30:])
        docs.delete(11)
        db.freeze()
        db.create_membrane("other", dim=3, metric="l2").put(1, [1, 2, 3])


def records_of(path, name: str) -> tuple[dict, dict]:
    with pdb.open(path, read_only=True) as db:
        m = db.membrane(name)
        shape = {"dim": m.dim, "metric": m.metric, "index": m.index_params}
        return shape, {r.id: r for r in m.scan()}


def test_help_lists_every_command_with_a_description(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        line = next(line for line in out.splitlines() if line.strip().startswith(name))
        described = line.strip()[len(name):].strip() or "next line"
        assert described, name
    for name in COMMANDS[:-1]:
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        assert "positional arguments" in capsys.readouterr().out


def test_version_names_the_distribution(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"pomaidb-core {pdb.__version__}"


def test_bench_help_hides_the_internal_probe(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "{core,open,wsbr,scale,text,ray}" in out and "_open_probe" not in out


def test_stats_matches_the_library_and_verify_passes(tmp_path, capsys):
    make_db(tmp_path / "db")
    code, out, _ = run(capsys, "stats", str(tmp_path / "db"))
    assert code == 0
    with pdb.open(tmp_path / "db", read_only=True) as db:
        assert json.loads(out) == db.stats()
    code, out, _ = run(capsys, "verify", str(tmp_path / "db"))
    assert code == 0 and "every checksum verified" in out


def test_compact_merges_segments_and_keeps_every_record(tmp_path, capsys):
    make_db(tmp_path / "db")
    _, before = records_of(tmp_path / "db", "docs")
    code, out, _ = run(capsys, "compact", str(tmp_path / "db"))
    assert code == 0
    with pdb.open(tmp_path / "db", read_only=True) as db:
        per_shard = db.stats()["membranes"]["docs"]["per_shard"]
    assert all(shard["segments"] <= 1 for shard in per_shard)
    assert "docs: 4 segments -> 2" in out
    assert records_of(tmp_path / "db", "docs")[1] == before


def test_a_missing_database_is_one_line_and_status_1(tmp_path, capsys):
    code, out, err = run(capsys, "stats", str(tmp_path / "nothing"))
    assert code == 1 and out == ""
    assert err.startswith("pomaidb: NotFoundError:") and err.count("\n") == 1


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_then_import_is_lossless(tmp_path, capsys, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    make_db(tmp_path / "db")
    out_file = str(tmp_path / f"docs.{fmt}")
    code, out, err = run(capsys, "export", str(tmp_path / "db"), out_file, "--membrane", "docs")
    assert code == 0 and "exported 53 records" in out
    assert "export docs" in err  # the progress bar, on by default in the CLI
    code, out, _ = run(capsys, "import", str(tmp_path / "copy"), out_file, "--shards", "3")
    assert code == 0 and "imported 53 records into membrane 'docs'" in out
    shape, copied = records_of(tmp_path / "copy", "docs")
    original_shape, original = records_of(tmp_path / "db", "docs")
    assert shape == original_shape
    assert copied == original  # Record equality: id, metadata and the float32 vector bit for bit
    assert all(copied[i].vector.tobytes() == original[i].vector.tobytes() for i in original)


def test_import_into_another_membrane_name(tmp_path, capsys):
    make_db(tmp_path / "db")
    run(capsys, "export", str(tmp_path / "db"), str(tmp_path / "o.jsonl"), "--membrane", "other")
    code, _, _ = run(capsys, "import", str(tmp_path / "db"), str(tmp_path / "o.jsonl"),
                     "--membrane", "renamed", "--no-progress")
    assert code == 0
    assert records_of(tmp_path / "db", "renamed")[1] == records_of(tmp_path / "db", "other")[1]


def test_export_asks_which_membrane_when_there_are_several(tmp_path, capsys):
    make_db(tmp_path / "db")
    code, _, err = run(capsys, "export", str(tmp_path / "db"), str(tmp_path / "x.jsonl"))
    assert code == 1 and "choose one with --membrane" in err
    assert not (tmp_path / "x.jsonl").exists()


def test_importing_a_file_that_is_not_an_export_changes_nothing(tmp_path, capsys):
    make_db(tmp_path / "db")
    bogus = tmp_path / "bogus.jsonl"
    bogus.write_text('{"hello": 1}\n{"id": 1, "vector": [1, 2, 3]}\n')
    code, _, err = run(capsys, "import", str(tmp_path / "db"), str(bogus))
    assert code == 1 and "is not a PomaiDB export" in err
    with pdb.open(tmp_path / "db", read_only=True) as db:
        assert db.membranes() == ["docs", "other"]


def test_a_record_line_of_the_wrong_dim_is_refused_with_its_line_number(tmp_path, capsys):
    source = tmp_path / "short.jsonl"
    header = transfer.Header("m", 3, "l2", {}).to_json()
    source.write_text(header + '\n{"id": 1, "vector": [1, 2, 3]}\n{"id": 2, "vector": [1, 2]}\n')
    code, _, err = run(capsys, "import", str(tmp_path / "db"), str(source), "--no-progress")
    assert code == 1 and "short.jsonl:3: vector has 2 values, the header says 3" in err


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_text_rides_along_in_both_formats(tmp_path, fmt):
    """Records with `text` (the engine's Record.text, where it has one) keep it through a file."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    rows = [transfer.Row(1, np.array([0.5, -1.0], dtype=np.float32), {"a": 1}, "first text"),
            transfer.Row(2, np.array([1e-38, 3.0], dtype=np.float32), None, None)]
    header = transfer.Header("m", 2, "ip", {})
    path = str(tmp_path / f"t.{fmt}")
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as handle:
            transfer._write_jsonl(handle, header, rows)
        read_header, read_rows = transfer._read_jsonl(path)
    else:
        transfer._write_parquet(path, header, rows)
        read_header, read_rows = transfer._read_parquet(path)
    assert read_header == header
    assert [(r.id, r.metadata, r.text, r.vector.tobytes()) for r in read_rows] == \
           [(r.id, r.metadata, r.text, r.vector.tobytes()) for r in rows]


def test_repair_prints_its_report_as_json_and_keeps_a_healthy_database_intact(tmp_path, capsys):
    make_db(tmp_path / "db")
    _, before = records_of(tmp_path / "db", "docs")
    code, out, _ = run(capsys, "repair", str(tmp_path / "db"))
    assert code == 0
    report = json.loads(out)
    assert report["segments_dropped"] == [] and report["wal_records_dropped"] == 0
    assert records_of(tmp_path / "db", "docs")[1] == before


def test_repair_of_a_directory_that_is_no_database_is_one_line(tmp_path, capsys):
    code, out, err = run(capsys, "repair", str(tmp_path))
    assert code == 1 and out == "" and err.startswith("pomaidb: NotFoundError:")


def _pomaidb(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from pomaidb_core.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=300, env=env, cwd=os.path.dirname(__file__))


def test_bench_with_a_data_directory_lacking_files_says_so_without_a_traceback(tmp_path):
    result = _pomaidb("bench", "core", "--data", str(tmp_path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"benchmark data directory {tmp_path} lacks base.f16.npy" in result.stderr


def test_bench_without_data_runs_on_generated_vectors(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "POMAIDB_BENCH_DATA"}
    result = _pomaidb("bench", "core", "--limit", "2000", "--queries", "5", env=env)
    assert result.returncode == 0, result.stderr
    assert "data: generated: 2,000 x 384 clustered unit vectors" in result.stdout
    assert "PomaiDB exact search, 4 shard(s)" in result.stdout


def test_bench_wsbr_without_data_runs_on_generated_vectors(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "POMAIDB_BENCH_DATA"}
    result = _pomaidb("bench", "wsbr", "--limit", "2000", "--queries", "20", "--no-baselines",
                      "--repeats", "1", "--out", str(tmp_path / "wsbr.png"), env=env)
    assert result.returncode == 0, result.stderr
    assert "data: generated: 2,000 x 384 clustered unit vectors" in result.stdout
    assert "plot: " in result.stdout and "Traceback" not in result.stderr


def test_an_export_that_fails_midway_leaves_no_file(tmp_path, capsys, monkeypatch):
    make_db(tmp_path / "db")

    def failing_scan(self, filter=None):
        yield from []
        raise pdb.CorruptionError("a damaged segment")

    monkeypatch.setattr(pdb.Membrane, "scan", failing_scan)
    code, _, err = run(capsys, "export", str(tmp_path / "db"), str(tmp_path / "d.jsonl"),
                       "--membrane", "docs")
    assert code == 1 and "CorruptionError: a damaged segment" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


def test_bench_scale_runs_end_to_end_on_a_small_generated_set():
    """Every row of the table, the cold reopen in a second process included, on 3,000 rows
    (the table's figures are checked where they are made: recall against exact truth)."""
    env = {k: v for k, v in os.environ.items() if k != "POMAIDB_BENCH_DATA"}
    result = _pomaidb("bench", "scale", "--sizes", "3000", "--dim", "16", "--no-reference", env=env)
    assert result.returncode == 0, result.stderr
    assert "== generated 3,000 x 16" in result.stdout
    for row in ("ingest (sync=batch)", "after compaction: search p50 / recall@10",
                "cold reopen: open / first query / first filtered"):
        assert row in result.stdout


def test_bench_scale_pairs_rounds_alternately_and_reports_the_median_ratio(monkeypatch):
    """`paired`: each round runs every query through both searches, the first to go
    alternating; on a clock where our queries take 2 and then 3 ticks against the
    reference's 1, the ratio is the median of the per-round ratios."""
    from types import SimpleNamespace

    from pomaidb_core import bench_scale

    clock = [0.0]
    monkeypatch.setattr(bench_scale, "time", SimpleNamespace(
        perf_counter=lambda: clock[0], process_time=lambda: clock[0]))
    calls = []

    def timed(name, ticks):
        def search(query):
            calls.append(name)
            clock[0] += ticks(len(calls))
            return [int(query[0])]
        return search

    queries = np.arange(6, dtype=np.float32)[:, None]
    rounds = [2.0, 2.0, 3.0, 2.0, 3.0]  # our per-query time in each round
    ours = timed("ours", lambda n: rounds[(n - 1) // 12])
    out = bench_scale._paired(ours, timed("ref", lambda n: 1.0), queries, rounds=5)
    firsts = [calls[i * 12] for i in range(5)]
    assert firsts == ["ours", "ref", "ours", "ref", "ours"]
    assert all(calls[i * 12 : i * 12 + 12].count("ours") == 6 for i in range(5))
    assert out["paired_ratio"] == 2.0 and out["paired_ref_p50_ms"] == 1e3
    assert out["paired_p50_ms"] == 2e3

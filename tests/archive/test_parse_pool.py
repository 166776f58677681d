"""Ingest with parsing in separate processes gives the same archive as parsing in-thread."""

from __future__ import annotations

import os
import signal
import threading
import warnings
from pathlib import Path

import pydicom
from sqlalchemy import select

from carina.archive import Archive, IngestStatus
from carina.db import Instance


def _variants(shared_data: Path) -> list[tuple[str | None, bytes]]:
    return [
        (str(p), p.read_bytes())
        for p in sorted((shared_data / "dicom_variants").rglob("*"))
        if p.is_file()
    ]


def _catalog(archive: Archive) -> dict[str, tuple[str, str, str]]:
    with archive.session() as session:
        rows = session.execute(
            select(
                Instance.sop_instance_uid, Instance.sha256, Instance.metadata_json, Instance.path
            )
        )
        return {uid: (digest, meta, path) for uid, digest, meta, path in rows}


def test_pool_and_thread_parse_alike(shared_data: Path, tmp_path: Path) -> None:
    items = _variants(shared_data)
    with Archive(tmp_path / "thread") as plain:
        expected = plain.ingest(items)
        expected_catalog = _catalog(plain)
        expected_files = {
            uid: plain.store.absolute(v[2]).read_bytes() for uid, v in expected_catalog.items()
        }
    with Archive(tmp_path / "pool", parse_processes=2) as pooled:
        got = pooled.ingest(items)
        assert pooled._pool is not None  # the processes did the parsing
        got_catalog = _catalog(pooled)
        got_files = {
            uid: pooled.store.absolute(v[2]).read_bytes() for uid, v in got_catalog.items()
        }
    assert got_files == expected_files  # same bytes stored, rewritten or not
    sent = {data for _, data in items}
    assert sum(stored in sent for stored in got_files.values()) > 0.8 * len(got_files)
    assert [(r.status, r.reason, r.sop_instance_uid, r.warnings) for r in got] == [
        (r.status, r.reason, r.sop_instance_uid, r.warnings) for r in expected
    ]
    assert sum(r.status is IngestStatus.REJECTED for r in got) > 0
    assert {uid: (d, m) for uid, (d, m, _) in got_catalog.items()} == {
        uid: (d, m) for uid, (d, m, _) in expected_catalog.items()
    }


def test_concurrent_connections_store_through_the_pool(
    lung_ct_files: list[Path], tmp_path: Path
) -> None:
    datas = [p.read_bytes() for p in lung_ct_files]
    with Archive(tmp_path / "a", parse_processes=2) as archive:
        results: list[IngestStatus] = []
        lock = threading.Lock()

        def sender(part: list[bytes]) -> None:
            for data in part:
                (result,) = archive.ingest([(None, data)])
                with lock:
                    results.append(result.status)

        threads = [threading.Thread(target=sender, args=(datas[n::4],)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results.count(IngestStatus.STORED) == len(datas)
        for path in lung_ct_files:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
            (stored,) = archive.find_instances({"SOPInstanceUID": uid})
            assert archive.read(stored) == path.read_bytes()


def test_a_killed_parsing_process_loses_nothing(lung_ct_files: list[Path], tmp_path: Path) -> None:
    datas = [p.read_bytes() for p in lung_ct_files]
    with Archive(tmp_path / "a", parse_processes=1) as archive:
        assert archive.ingest_one(datas[0]).status is IngestStatus.STORED
        pool = archive._pool
        assert pool is not None
        for pid in list(pool._processes):  # the worker dies between two ingests
            os.kill(pid, signal.SIGKILL)
        statuses = [r.status for r in archive.ingest([(None, d) for d in datas[1:]])]
        assert statuses == [IngestStatus.STORED] * (len(datas) - 1)
        # a new pool takes over for the next ingest
        assert archive.ingest_one(datas[0]).status is IngestStatus.ALREADY_STORED
        assert archive._pool is not None
        assert archive._pool is not pool
        assert len(_catalog(archive)) == len(datas)

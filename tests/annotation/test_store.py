"""The annotation store on its own database: versions are whole or absent (crashes injected in a
child process), concurrent saves on one parent have one winner, blobs verify against their
names, label sets and grids are enforced."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import sessionmaker

from carina.annotation import AnnotationStore, content_digest
from carina.auth import AuthStore
from carina.core.errors import ConflictError, GeometryError, LabelError, StorageError
from carina.core.geometry import Geometry
from carina.core.labels import Label, LabelSet
from carina.db import create_db_engine, sqlite_url, upgrade_database

GRID = Geometry.from_components(shape=(6, 5, 4), spacing=(0.8, 0.8, 2.5))  # (i, j, k)


def _open(data_dir: Path) -> tuple[AnnotationStore, int]:
    engine = create_db_engine(sqlite_url(data_dir / "catalog.sqlite"))
    upgrade_database(engine)
    auth = AuthStore(sessionmaker(engine, expire_on_commit=False))
    if not auth.users():
        auth.create_user("ann", None)
        auth.create_project(auth.principal("ann"), "p")
    return AnnotationStore(engine, data_dir), auth.principal("ann").user_id


def _setup(data_dir: Path) -> tuple[AnnotationStore, int, int]:
    store, user = _open(data_dir)
    store.create_label_set("p", "organs", LabelSet([Label(1, "liver"), Label(300, "tumour")]))
    seg = store.create_segmentation(
        "p", study_uid="1.2.3", series_uid="1.2.3.4", label_set="organs", geometry=GRID
    )
    return store, user, seg.id


def _labels(fill: int = 1) -> np.ndarray:
    arr = np.zeros((4, 5, 6), dtype=np.uint16)  # (k, j, i)
    arr[1:3, 1:4, 2:5] = fill
    return arr


def test_versions_and_label_rules(tmp_path: Path) -> None:
    store, user, seg = _setup(tmp_path)
    v1 = store.save_version("p", seg, _labels(1), parent_id=None, author_id=user, tool="brush")
    assert v1.voxel_counts == {1: 2 * 3 * 3}
    v2 = store.save_version("p", seg, _labels(300), parent_id=v1.id, author_id=user)
    assert [v.number for v in store.versions("p", seg)] == [1, 2]
    assert np.array_equal(store.voxels(v2), _labels(300))
    assert store.segmentation("p", seg).head_version_id == v2.id
    with pytest.raises(LabelError, match="label value"):
        store.save_version("p", seg, _labels(2), parent_id=v2.id, author_id=user)
    with pytest.raises(GeometryError):
        store.save_version("p", seg, _labels(1)[:, :, :5], parent_id=v2.id, author_id=user)
    with pytest.raises(LabelError, match="uint8 or uint16"):
        store.save_version("p", seg, _labels(1).astype(np.int32), parent_id=v2.id, author_id=user)
    with pytest.raises(ConflictError) as stale:
        store.save_version("p", seg, _labels(1), parent_id=v1.id, author_id=user)
    assert stale.value.key == str(v2.id)
    assert store.segmentation("p", seg).head_version_id == v2.id


def test_concurrent_saves_on_one_parent_have_one_winner(tmp_path: Path) -> None:
    store, user, seg = _setup(tmp_path)
    v1 = store.save_version("p", seg, _labels(1), parent_id=None, author_id=user)
    outcomes: list[object] = []
    start = threading.Barrier(6)

    def save(n: int) -> None:
        labels = _labels(1)
        labels[0, 0, n] = 300
        start.wait()
        try:
            outcomes.append(store.save_version("p", seg, labels, parent_id=v1.id, author_id=user))
        except ConflictError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if not isinstance(o, ConflictError)]
    losers = [o for o in outcomes if isinstance(o, ConflictError)]
    assert len(winners) == 1
    assert len(losers) == 5
    head = store.segmentation("p", seg).head_version_id
    assert head == winners[0].id  # type: ignore[attr-defined]
    assert all(e.key == str(head) for e in losers)
    assert [v.number for v in store.versions("p", seg)] == [1, 2]


def _crash_after_blob(data_dir: str, parent: int) -> None:
    """Child process: the voxels are written, then the process dies before the version row."""
    import os

    from carina.annotation.blobs import BlobStore

    put = BlobStore.put

    def put_then_die(self: BlobStore, array: np.ndarray) -> str:
        put(self, array)
        os._exit(17)

    BlobStore.put = put_then_die  # type: ignore[method-assign]
    store, user = _open(Path(data_dir))
    store.save_version("p", 1, _labels(300), parent_id=parent, author_id=user)


def _crash_before_rename(data_dir: str, parent: int) -> None:
    """Child process: dies with the voxels half written to their temporary file."""
    import os

    def replace_then_die(src: object, dst: object) -> None:
        os._exit(18)

    os.replace = replace_then_die  # type: ignore[assignment]
    store, user = _open(Path(data_dir))
    store.save_version("p", 1, _labels(300), parent_id=parent, author_id=user)


@pytest.mark.parametrize(("crash", "code"), [(_crash_after_blob, 17), (_crash_before_rename, 18)])
def test_a_crash_never_leaves_a_half_version(tmp_path: Path, crash: object, code: int) -> None:
    store, user, seg = _setup(tmp_path)
    assert seg == 1
    v1 = store.save_version("p", seg, _labels(1), parent_id=None, author_id=user)
    child = multiprocessing.get_context("spawn").Process(target=crash, args=(str(tmp_path), v1.id))
    child.start()
    child.join(60)
    assert child.exitcode == code
    store, user = _open(tmp_path)
    assert [v.id for v in store.versions("p", seg)] == [v1.id]
    assert store.segmentation("p", seg).head_version_id == v1.id
    digest = content_digest(_labels(300))
    blob = store.blobs.path(digest)
    if blob.exists():  # written whole before the crash: verifies, and is simply reused
        assert np.array_equal(store.blobs.get(digest), _labels(300))
    v2 = store.save_version("p", seg, _labels(300), parent_id=v1.id, author_id=user)
    assert v2.blob_sha256 == digest
    assert np.array_equal(store.voxels(v2), _labels(300))


def test_damaged_blob_is_detected(tmp_path: Path) -> None:
    store, user, seg = _setup(tmp_path)
    v1 = store.save_version("p", seg, _labels(1), parent_id=None, author_id=user)
    path = store.blobs.path(v1.blob_sha256)
    other = _labels(300)
    # the file of another label map put under this name
    path.unlink()
    digest = store.blobs.put(other)
    store.blobs.path(digest).rename(path)
    with pytest.raises(StorageError, match="does not match its name"):
        store.voxels(v1)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(StorageError, match="damaged"):
        store.voxels(v1)


def test_label_sets_are_validated(tmp_path: Path) -> None:
    store, _ = _open(tmp_path)
    with pytest.raises(LabelError):
        store.create_label_set("p", "empty", LabelSet())
    store.create_label_set("p", "a", LabelSet([Label(1, "x")]))
    with pytest.raises(ConflictError):
        store.create_label_set("p", "a", LabelSet([Label(2, "y")]))
    with pytest.raises(LabelError, match="appears twice"):
        LabelSet.from_list([{"value": 1, "name": "x"}, {"value": 1, "name": "y"}])
    with pytest.raises(LabelError):
        LabelSet.from_list([{"value": "1", "name": "x"}])
    parsed = LabelSet.from_list(
        [
            {
                "value": 4,
                "name": "liver",
                "color": [1, 2, 3],
                "code": {"value": "10200004", "scheme": "SCT", "meaning": "Liver"},
            }
        ]
    )
    assert parsed[4].code is not None
    assert parsed[4].code.value == "10200004"
    assert LabelSet.from_list(parsed.to_list()) == parsed


def test_sweep_removes_only_old_unreferenced_blobs(tmp_path: Path) -> None:
    store, user, seg = _setup(tmp_path)
    kept = store.save_version("p", seg, _labels(1), parent_id=None, author_id=user)
    orphan = store.blobs.put(_labels(300))  # as left by a save that died before its row
    partial = store.blobs.root / "ab" / "cd" / ".x.lm.0123.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half")
    assert store.sweep_blobs() == []  # all younger than an hour: a save may be in flight
    removed = store.sweep_blobs(older_than_s=0)
    assert sorted(removed) == sorted([f"{orphan}.lm", partial.name])
    assert not store.blobs.path(orphan).exists()
    assert np.array_equal(store.voxels(kept), _labels(1))

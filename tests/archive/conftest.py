"""Fixtures of the archive tests: a fresh archive and the real CT series."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from carina.archive import Archive


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    with Archive(tmp_path / "data") as opened:
        yield opened


@pytest.fixture(scope="session")
def lung_ct_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    assert len(files) == 30
    return files

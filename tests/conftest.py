"""Shared fixtures: the public data in ../shared/data, read in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("CARINA_SHARED_DATA")
    return Path(env) if env else _ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"shared test data not found at {path} (set CARINA_SHARED_DATA)")
    return path

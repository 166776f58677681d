"""Every frame of a series in one response (``GET .../series/{uid}/frames``), for the viewer's
volumes: on the real lung CT, byte-identical to WADO-RS frames and equal to pydicom's pixels."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pydicom

from .conftest import Site
from .test_viewer_render import LUNG, _lung_uids, _url, lung_site  # noqa: F401


def _records(body: bytes) -> list[tuple[dict[str, object], bytes]]:
    out = []
    offset = 0
    while offset < len(body):
        (head_length,) = struct.unpack_from("<I", body, offset)
        head = json.loads(body[offset + 4 : offset + 4 + head_length])
        start = offset + 4 + head_length
        out.append((head, body[start : start + head["length"]]))
        offset = start + head["length"]
    assert offset == len(body)
    return out


def test_every_frame_equals_its_wado_rs_frame_and_the_files_pixels(
    lung_site: Site,  # noqa: F811
    shared_data: Path,
) -> None:
    study, series = _lung_uids(shared_data)
    headers = lung_site.headers("viewer")
    response = lung_site.client.get(_url(study, series, "frames"), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    records = _records(response.content)
    files = {
        str(ds.SOPInstanceUID): ds
        for ds in (pydicom.dcmread(p) for p in sorted((shared_data / LUNG).glob("*.dcm")))
    }
    assert len(records) == 30
    assert {head["sop"] for head, _ in records} == set(files)
    for head, data in records:
        assert head["frame"] == 1
        ds = files[str(head["sop"])]
        pixels = np.frombuffer(data, dtype=ds.pixel_array.dtype.newbyteorder("<"))
        assert np.array_equal(pixels.reshape(ds.Rows, ds.Columns), ds.pixel_array)
    # the same bytes as the frame by WADO-RS
    head, data = records[7]
    frame = lung_site.client.get(
        f"/projects/alpha/dicom-web/studies/{study}/series/{series}/instances/{head['sop']}/frames/1",
        headers={**headers, "Accept": "application/octet-stream; transfer-syntax=*"},
    )
    assert frame.status_code == 200, frame.text
    assert frame.content == data


def test_unknown_series_foreign_projects_and_anonymous_callers(
    lung_site: Site,  # noqa: F811
    shared_data: Path,
) -> None:
    site = lung_site
    study, series = _lung_uids(shared_data)
    url = _url(study, series, "frames")
    headers = site.headers("viewer")
    assert site.client.get(_url(study, "1.2.3.4.5", "frames"), headers=headers).status_code == 404
    outsider = site.headers("outsider")
    assert site.client.get(url, headers=outsider).status_code == 404
    beta = _url(study, series, "frames", project="beta")
    assert site.client.get(beta, headers=outsider).status_code == 404
    assert site.client.get(url).status_code == 401

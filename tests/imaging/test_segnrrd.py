"""3D Slicer segmentations (.seg.nrrd): real reference label maps written, parsed and read back."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from carina.core import Label, LabelMap, LabelSet, Volume
from carina.core.errors import ImageIOError, LabelError, UnsupportedFormatError
from carina.core.labels import Code
from carina.imaging import (
    check_seg_nrrd_bytes,
    read_image,
    read_labelmap,
    read_seg_nrrd,
    read_segments,
    write_image,
)

LIVER = Code("10200004", "SCT", "Liver")
SPLEEN = Code("78961009", "SCT", "Spleen")

_NRRD_TYPES = {"unsigned char": np.uint8, "unsigned short": np.uint16, "int": np.int32}


def _reference(shared: Path, rel: str) -> LabelMap:
    """A TotalSegmentator reference label map named by its label set, liver and spleen coded."""
    ref = shared / "totalsegmentator_ref"
    names = LabelSet.from_json(ref / "label_map_total.json")
    coded = {1: SPLEEN, 5: LIVER}
    labels = LabelSet(Label(lab.value, lab.name, lab.color, coded.get(lab.value)) for lab in names)
    return read_labelmap(ref / rel, labels)


def _parse_nrrd(path: Path) -> tuple[dict[str, str], dict[str, str], bytes]:
    """Header fields (``key: value``), key-value pairs (``key:=value``) and the raw data bytes,
    read from the file as text up to the blank line that ends an attached header."""
    raw = path.read_bytes()
    end = raw.index(b"\n\n")
    lines = raw[:end].decode("latin-1").split("\n")
    assert lines[0].startswith("NRRD000")
    fields: dict[str, str] = {}
    pairs: dict[str, str] = {}
    for line in lines[1:]:
        if line.startswith("#"):
            continue
        if ":=" in line:
            key, value = line.split(":=", 1)
            pairs[key] = value
        else:
            key, value = line.split(": ", 1)
            fields[key] = value
    return fields, pairs, raw[end + 2 :]


def _vector(text: str) -> npt.NDArray[np.float64]:
    return np.array([float(x) for x in text.strip("()").split(",")])


def _bounding_box(mask: npt.NDArray[np.bool_]) -> str:
    idx = np.argwhere(mask)
    if not idx.size:
        return "0 -1 0 -1 0 -1"
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    return " ".join(f"{lo[a]} {hi[a]}" for a in range(3))


@pytest.mark.parametrize(
    "rel", ["ct_3mm_30sl/seg_total.nii.gz", "ct_dicom_seg_total.nii.gz"], ids=["RAS", "LAS"]
)
def test_write_read_back_reference_label_map(shared_data: Path, tmp_path: Path, rel: str) -> None:
    lm = _reference(shared_data, rel)
    assert len(lm.present_values()) > 20
    out = write_image(lm, tmp_path / "total.seg.nrrd")
    assert not list(tmp_path.glob(".*partial*"))
    back = read_labelmap(out)
    assert isinstance(read_image(out), LabelMap)
    np.testing.assert_array_equal(back.array, lm.array)
    np.testing.assert_allclose(back.geometry.affine, lm.geometry.affine, atol=1e-6, rtol=0)
    assert back.labels == lm.labels  # values, names, colours and codes
    assert back.labels[5].code == LIVER
    assert back.labels[2].code is None


def test_header_holds_slicer_fields_and_geometry(shared_data: Path, tmp_path: Path) -> None:
    lm = _reference(shared_data, "ct_3mm_30sl/seg_total.nii.gz")
    out = write_image(lm, tmp_path / "total.seg.nrrd")
    fields, pairs, data = _parse_nrrd(out)

    assert fields["dimension"] == "3"
    assert fields["space"] == "left-posterior-superior"
    assert fields["kinds"] == "domain domain domain"
    assert fields["encoding"] == "gzip"
    sizes = [int(x) for x in fields["sizes"].split()]
    assert tuple(sizes) == lm.shape
    # the voxels, decoded here: gzip, first axis fastest
    dtype = _NRRD_TYPES[fields["type"]]
    voxels = np.frombuffer(gzip.decompress(data), dtype=dtype).reshape(sizes[::-1]).T
    np.testing.assert_array_equal(voxels, lm.array)

    origin = _vector(fields["space origin"])
    directions = [_vector(v) for v in fields["space directions"].split()]
    for index in [(0, 0, 0), (1, 2, 3)]:
        point = origin + sum(i * d for i, d in zip(index, directions, strict=True))
        np.testing.assert_allclose(point, lm.geometry.index_to_world(index), atol=1e-6)

    assert pairs["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert "Binary labelmap" in pairs["Segmentation_ContainedRepresentationNames"].split("|")
    assert pairs["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    labels = list(lm.labels)
    assert not any(f"Segment{len(labels)}_" in key for key in pairs)
    array = np.asarray(lm.array)
    for n, label in enumerate(labels):
        assert pairs[f"Segment{n}_Name"] == label.name
        assert pairs[f"Segment{n}_ID"]
        assert int(pairs[f"Segment{n}_LabelValue"]) == label.value
        assert pairs[f"Segment{n}_Layer"] == "0"
        rgb = [float(x) for x in pairs[f"Segment{n}_Color"].split()]
        assert all(0.0 <= c <= 1.0 for c in rgb)
        np.testing.assert_allclose(np.array(rgb) * 255, label.color, atol=1e-3)
        assert pairs[f"Segment{n}_Extent"] == _bounding_box(array == label.value)
    ids = [pairs[f"Segment{n}_ID"] for n in range(len(labels))]
    assert len(set(ids)) == len(ids)
    # an absent label keeps its name as an empty segment
    absent = next(lab for lab in labels if lab.value not in lm.present_values())
    n = labels.index(absent)
    assert pairs[f"Segment{n}_Extent"] == "0 -1 0 -1 0 -1"
    # terminology: context~category~type~type modifier~anatomic context~region~region modifier
    liver_tags = pairs[f"Segment{labels.index(lm.labels[5])}_Tags"].rstrip("|").split("|")
    key, _, entry = liver_tags[0].partition(":")
    assert key == "TerminologyEntry"
    parts = entry.split("~")
    assert len(parts) == 7
    assert parts[1] == "SCT^123037004^Anatomical Structure"
    assert parts[2] == "SCT^10200004^Liver"
    assert pairs[f"Segment{labels.index(lm.labels[2])}_Tags"] == ""

    segments = read_segments(out)
    assert [s.name for s in segments] == [lab.name for lab in labels]


def _write_layers(
    path: Path,
    layers: list[npt.NDArray[np.uint8]],
    lm: LabelMap,
    segments: list[tuple[str, int | None, int, tuple[float, float, float], str]],
) -> Path:
    """A multi-layer segmentation as Slicer writes one (list axis first), written here; a layer
    of None leaves out ``Layer`` and ``LabelValue``, as Slicer did before it had layers."""
    a = lm.geometry.affine
    dirs = " ".join("(" + ",".join(repr(float(x)) for x in a[:3, c]) + ")" for c in range(3))
    origin = "(" + ",".join(repr(float(x)) for x in a[:3, 3]) + ")"
    header = [
        "NRRD0004",
        "type: unsigned char",
        "dimension: 4",
        "space: left-posterior-superior",
        f"sizes: {len(layers)} {' '.join(str(s) for s in lm.shape)}",
        f"space directions: none {dirs}",
        "kinds: list domain domain domain",
        "encoding: gzip",
        f"space origin: {origin}",
        "Segmentation_MasterRepresentation:=Binary labelmap",
        "Segmentation_ContainedRepresentationNames:=Binary labelmap|Closed surface|",
        "Segmentation_ReferenceImageExtentOffset:=0 0 0",
    ]
    for n, (name, layer, value, color, tags) in enumerate(segments):
        header += [
            f"Segment{n}_ID:=Segment_{n + 1}",
            f"Segment{n}_Name:={name}",
            f"Segment{n}_Color:={color[0]} {color[1]} {color[2]}",
            f"Segment{n}_Tags:={tags}",
        ]
        if layer is not None:
            header += [f"Segment{n}_Layer:={layer}", f"Segment{n}_LabelValue:={value}"]
    stack = np.stack(layers, axis=-1)  # (i, j, k, layer); the file runs layer fastest, then i, j, k
    data = np.ascontiguousarray(stack.transpose(2, 1, 0, 3)).tobytes()
    path.write_bytes(("\n".join(header) + "\n\n").encode() + gzip.compress(data))
    return path


def _layered(shared: Path) -> tuple[LabelMap, list[npt.NDArray[np.uint8]]]:
    """Liver and spleen in layer 0 (values 1, 2), stomach in layer 1 (value 1), as Slicer numbers
    segments of each layer."""
    lm = _reference(shared, "ct_3mm_30sl/seg_total.nii.gz")
    arr = np.asarray(lm.array)
    first = np.zeros(lm.shape, np.uint8)
    first[arr == 5] = 1
    first[arr == 1] = 2
    second = (arr == 6).astype(np.uint8)
    return lm, [first, second]


def test_multi_layer_file_is_merged(shared_data: Path, tmp_path: Path) -> None:
    lm, layers = _layered(shared_data)
    liver_tag = (
        "TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list"
        "~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^"
        "~Anatomic codes - DICOM master list~^^~^^|"
    )
    path = _write_layers(
        tmp_path / "layers.seg.nrrd",
        layers,
        lm,
        [
            ("liver", 0, 1, (0.5, 0.25, 0.0), liver_tag),
            ("spleen", 0, 2, (0.0, 1.0, 0.0), ""),
            ("stomach", 1, 1, (1.0, 0.0, 1.0), ""),
        ],
    )
    back = read_labelmap(path)
    np.testing.assert_allclose(back.geometry.affine, lm.geometry.affine, atol=1e-6, rtol=0)
    assert [lab.name for lab in back.labels] == ["liver", "spleen", "stomach"]
    assert back.labels.by_name("liver").color == (128, 64, 0)
    assert back.labels.by_name("liver").code == LIVER
    arr = np.asarray(lm.array)
    for name, value in [("liver", 5), ("spleen", 1), ("stomach", 6)]:
        np.testing.assert_array_equal(back.mask(name), arr == value)
    # layer 1 reuses value 1, so the segments are numbered in file order
    assert back.labels.values == (1, 2, 3)
    assert np.count_nonzero(back.array) == np.count_nonzero(np.isin(arr, [1, 5, 6]))


def test_multi_layer_keeps_distinct_values(shared_data: Path, tmp_path: Path) -> None:
    lm, (first, second) = _layered(shared_data)
    path = _write_layers(
        tmp_path / "layers.seg.nrrd",
        [first, second * 7],
        lm,
        [
            ("liver", 0, 1, (1.0, 0.0, 0.0), ""),
            ("spleen", 0, 2, (0.0, 1.0, 0.0), ""),
            ("stomach", 1, 7, (0.0, 0.0, 1.0), ""),
        ],
    )
    back = read_labelmap(path)
    assert back.labels.values == (1, 2, 7)
    np.testing.assert_array_equal(back.mask(7), np.asarray(lm.array) == 6)


def test_one_segment_per_layer_without_layer_fields(shared_data: Path, tmp_path: Path) -> None:
    lm, (first, second) = _layered(shared_data)
    path = _write_layers(
        tmp_path / "legacy.seg.nrrd",
        [(first == 1).astype(np.uint8), second],
        lm,
        [("liver", None, 1, (1.0, 0.0, 0.0), ""), ("stomach", None, 1, (0.0, 0.0, 1.0), "")],
    )
    back = read_labelmap(path)
    assert [(lab.value, lab.name) for lab in back.labels] == [(1, "liver"), (2, "stomach")]
    np.testing.assert_array_equal(back.mask("liver"), np.asarray(lm.array) == 5)
    np.testing.assert_array_equal(back.mask("stomach"), np.asarray(lm.array) == 6)


def test_overlapping_layers_are_refused(shared_data: Path, tmp_path: Path) -> None:
    lm, (first, second) = _layered(shared_data)
    grown = second.copy()
    liver = np.argwhere(first == 1)
    grown[tuple(liver[:5].T)] = 1  # five liver voxels also in the stomach
    path = _write_layers(
        tmp_path / "overlap.seg.nrrd",
        [first, grown],
        lm,
        [
            ("liver", 0, 1, (1.0, 0.0, 0.0), ""),
            ("spleen", 0, 2, (0.0, 1.0, 0.0), ""),
            ("stomach", 1, 1, (0.0, 0.0, 1.0), ""),
        ],
    )
    with pytest.raises(LabelError, match=r"'liver' \(layer 0\) and 'stomach' \(layer 1\) overlap"):
        read_labelmap(path)
    with pytest.raises(LabelError, match="5 voxels"):
        read_image(path)


def test_undeclared_values_are_refused(shared_data: Path, tmp_path: Path) -> None:
    lm, (first, _second) = _layered(shared_data)
    path = _write_layers(
        tmp_path / "stray.seg.nrrd", [first], lm, [("liver", 0, 1, (1.0, 0.0, 0.0), "")]
    )
    with pytest.raises(ImageIOError, match=r"layer 0 holds values \[2\] that no segment declares"):
        read_labelmap(path)


def test_only_label_maps_become_segmentations(shared_data: Path, tmp_path: Path) -> None:
    ct = read_image(shared_data / "totalsegmentator_ref" / "ct_3mm_30sl" / "ct.nii.gz")
    assert not isinstance(ct, LabelMap)
    target = tmp_path / "ct.seg.nrrd"
    with pytest.raises(UnsupportedFormatError, match="holds a label map, not an image"):
        write_image(Volume(ct.array, ct.geometry), target)
    assert not list(tmp_path.iterdir())


def test_wide_values_and_names_with_separators(shared_data: Path, tmp_path: Path) -> None:
    lm = _reference(shared_data, "ct_3mm_30sl/seg_total.nii.gz")
    arr = np.asarray(lm.array).astype(np.int32)
    arr[arr == 5] = 300
    labels = LabelSet(
        [Label(1, "spleen | milt ~ rate^x: y", (1, 2, 3), SPLEEN), Label(300, "liver", (0, 0, 0))]
    )
    wide = LabelMap(np.where(np.isin(arr, [1, 300]), arr, 0), lm.geometry, labels=labels)
    out = write_image(wide, tmp_path / "wide.seg.nrrd")
    fields, pairs, _ = _parse_nrrd(out)
    assert fields["type"] == "unsigned short"
    assert pairs["Segment0_Name"] == "spleen | milt ~ rate^x: y"
    back = read_labelmap(out)
    assert back.labels == labels
    np.testing.assert_array_equal(back.array, wide.array)


def test_segments_take_the_values_of_their_names(shared_data: Path, tmp_path: Path) -> None:
    lm, (first, second) = _layered(shared_data)
    arr = np.asarray(lm.array)
    ours = LabelSet(
        [
            Label(10, "stomach", (1, 2, 3)),
            Label(20, "liver", (4, 5, 6), LIVER),
            Label(30, "spleen", (7, 8, 9)),
            Label(40, "kidney"),
        ]
    )
    path = _write_layers(
        tmp_path / "layers.seg.nrrd",
        [first, second],
        lm,
        [
            ("liver", 0, 1, (0.5, 0.25, 0.0), ""),
            ("spleen", 0, 2, (0.0, 1.0, 0.0), ""),
            ("stomach", 1, 1, (1.0, 0.0, 1.0), ""),
        ],
    )
    back = read_seg_nrrd(path, ours)
    assert back.labels == ours.subset([10, 20, 30])  # the set's names, colours and codes
    expected = np.select([arr == 5, arr == 1, arr == 6], [20, 30, 10], 0)
    np.testing.assert_array_equal(back.array, expected)

    # two segments of one name (Slicer allows it) become one label
    two = _write_layers(
        tmp_path / "two.seg.nrrd",
        [first, second],
        lm,
        [
            ("liver", 0, 1, (0.5, 0.25, 0.0), ""),
            ("spleen", 0, 2, (0.0, 1.0, 0.0), ""),
            ("liver", 1, 1, (1.0, 0.0, 1.0), ""),
        ],
    )
    merged = read_seg_nrrd(two, ours)
    assert merged.labels.values == (20, 30)
    np.testing.assert_array_equal(merged.mask("liver"), np.isin(arr, [5, 6]))
    # without a label set the second one is told apart by its ID
    assert [lab.name for lab in read_seg_nrrd(two).labels] == [
        "liver",
        "spleen",
        "liver (Segment_3)",
    ]


def test_names_outside_the_label_set_are_refused(shared_data: Path, tmp_path: Path) -> None:
    lm = _reference(shared_data, "ct_3mm_30sl/seg_total.nii.gz")
    out = write_image(lm, tmp_path / "total.seg.nrrd")
    chest = LabelSet([Label(1, "spleen"), Label(2, "lesion")])
    with pytest.raises(LabelError, match=r"segment\(s\) 'kidney_right', 'kidney_left', .*"):
        read_seg_nrrd(out, chest)
    with pytest.raises(LabelError, match=r"its names: 'spleen', 'lesion'"):
        read_seg_nrrd(out, chest)
    # a plain label map NRRD names no segments to match
    plain = write_image(lm, tmp_path / "plain.nrrd")
    with pytest.raises(LabelError, match="names no segments"):
        read_seg_nrrd(plain, chest)


def test_uploaded_bytes_are_one_self_contained_file(shared_data: Path, tmp_path: Path) -> None:
    lm = _reference(shared_data, "ct_3mm_30sl/seg_total.nii.gz")
    data = write_image(lm, tmp_path / "total.seg.nrrd").read_bytes()
    voxels = int(np.prod(lm.shape))
    check_seg_nrrd_bytes(data, max_values=voxels)
    with pytest.raises(ImageIOError, match=f"holds {voxels} voxel values .* at most {voxels - 1}"):
        check_seg_nrrd_bytes(data, max_values=voxels - 1)
    with pytest.raises(ImageIOError, match="not a NRRD file"):
        check_seg_nrrd_bytes(gzip.compress(data))
    # a detached header: the reader would take the voxels of the file it names
    target = tmp_path / "voxels.raw"
    target.write_bytes(bytes(range(64)))
    header = (
        "NRRD0004\r\ntype: unsigned char\r\ndimension: 3\r\nsizes: 4 4 4\r\n"
        f"encoding: raw\r\n# a comment\r\ndatafile: {target}\r\n\r\n"
    )
    detached = tmp_path / "detached.nrrd"
    detached.write_text(header, newline="")
    assert np.array_equal(np.asarray(read_image(detached).array).ravel(order="F"), np.arange(64))
    with pytest.raises(ImageIOError, match="names a separate data file"):
        check_seg_nrrd_bytes(header.encode())
    # key-value pairs and the data after the header are not header fields
    check_seg_nrrd_bytes(data.replace(b"\n\n", b"\nx:=data file: /x\n\n", 1))
    check_seg_nrrd_bytes(b"NRRD0004\nsizes: 1 1 1\n\ndata file: /x\n")

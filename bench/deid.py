"""De-identification benchmark: Carina against Orthanc, dicognito, deid and gdcmanon.

Run ``python bench/deid.py`` (needs the ``bench`` extra, Debian ``orthanc``, ``libgdcm-tools``,
``dicom3tools``). Every tool gets the same input files in the same run; the script measures
files/s and scores every output against DICOM PS3.15 Table E.1-1:

- residual attributes: attributes the Basic Profile removes or replaces (X, Z, D, U and their
  combinations, private attributes, sequences to remove) that are still in the output with the
  input's value, per file;
- PHI strings: values of those attributes (names, IDs, dates, addresses, UIDs) found anywhere in
  the output bytes;
- references: references between objects (instance, series, study, frame of reference UIDs) that
  resolved in the input and still resolve in the output;
- new dciodvfy errors: output files with an error the input did not have.

Results go to ``bench/results/deid.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

ROOT = Path(__file__).resolve().parents[1]
# this file is named like the PyPI package ``deid``: keep its folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(ROOT / "src"))

from carina.deid import (  # noqa: E402
    Deidentifier,
    DeidOptions,
    annex_e,
    deidentify_file,
    deidentify_tree,
)
from carina.deid.engine import resolve_action  # noqa: E402

SHARED = Path(os.environ.get("CARINA_SHARED_DATA", ROOT.parent / "shared" / "data"))
PEER = ROOT.parent / "shared" / "tools" / "orthanc-peer"
SECRET = b"benchmark-project-secret-000000"
MALFORMED = {"MR_truncated.dcm", "rtplan_truncated.dcm"}
TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "DA", "DT", "TM", "AE"}


def quiet_read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            ds = pydicom.dcmread(path, force=True)
        for _ in ds.iterall():
            pass
    return ds


# ----------------------------------------------------------------------------- input set
def build_inputs(target: Path, minimum: int) -> list[Path]:
    """Copy every stored object of the two test folders into ``target`` (flat, numbered), then
    add copies with changed UIDs until there are at least ``minimum`` files."""
    sources = sorted((SHARED / "dicom_variants").rglob("*")) + sorted(
        (SHARED / "deid_fake_phi").rglob("*.dcm")
    )
    files: list[Path] = []
    for src in sources:
        if not src.is_file() or src.name in MALFORMED or src.suffix in {".csv", ".md", ".json"}:
            continue
        try:
            ds = quiet_read(src)
        except Exception:
            continue
        if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
            continue
        if "DirectoryRecordSequence" in ds or ds.file_meta.get("TransferSyntaxUID") is None:
            continue
        dst = target / f"{len(files):04d}_{src.name}"
        shutil.copyfile(src, dst)
        files.append(dst)
    originals = list(files)
    copy_no = 0
    while len(files) < minimum:
        copy_no += 1
        for src in originals:
            if len(files) >= minimum:
                break
            ds = quiet_read(src)
            for kw in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
                if kw in ds:
                    ds[kw].value = f"{ds[kw].value}.{copy_no}"[:64]
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            dst = target / f"{len(files):04d}_copy{copy_no}_{src.name}"
            ds.save_as(dst)
            files.append(dst)
    return files


# ----------------------------------------------------------------------------- tools
@dataclass
class ToolRun:
    name: str
    mode: str
    seconds: float = 0.0
    outputs: dict[Path, Path] = field(default_factory=dict)
    failures: int = 0
    note: str = ""


def median_of(n: int, fn: Callable[[], ToolRun]) -> ToolRun:
    """Run ``fn`` n times; keep the run with the median time (its outputs are the last ones)."""
    runs = [fn() for _ in range(n)]
    times = sorted(r.seconds for r in runs)
    best = runs[-1]
    best.seconds = times[len(times) // 2]
    best.mode += f" (median of {n})"
    return best


def run_carina(inputs: list[Path], out: Path) -> ToolRun:
    run = ToolRun("Carina", "deidentify_file in one process, Basic Profile")
    deid = Deidentifier(SECRET, DeidOptions())
    t0 = time.perf_counter()
    for src in inputs:
        dst = out / src.name
        try:
            deidentify_file(src, dst, deid)
            run.outputs[src] = dst
        except Exception:
            run.failures += 1
    run.seconds = time.perf_counter() - t0
    return run


def run_carina_parallel(inputs: list[Path], out: Path, workers: int) -> ToolRun:
    run = ToolRun("Carina", f"deidentify_tree on the folder, {workers} processes, Basic Profile")
    deid = Deidentifier(SECRET, DeidOptions())
    t0 = time.perf_counter()
    results = deidentify_tree(inputs[0].parent, out, deid, workers=workers)
    run.seconds = time.perf_counter() - t0
    for r in results:
        if r.report is not None and r.output is not None:
            run.outputs[r.source] = r.output
        else:
            run.failures += 1
    return run


def run_dicognito(inputs: list[Path], out: Path) -> ToolRun:
    from dicognito.anonymizer import Anonymizer

    run = ToolRun("dicognito", "in-process Anonymizer().anonymize(ds); dcmread/save_as")
    anonymizer = Anonymizer(seed="benchmark")
    t0 = time.perf_counter()
    for src in inputs:
        dst = out / src.name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(src)
                anonymizer.anonymize(ds)
                ds.save_as(dst)
            run.outputs[src] = dst
        except Exception:
            run.failures += 1
    run.seconds = time.perf_counter() - t0
    return run


def run_deid(inputs: list[Path], out: Path) -> ToolRun:
    from deid.config import DeidRecipe  # type: ignore[import-untyped]
    from deid.dicom import replace_identifiers  # type: ignore[import-untyped]

    run = ToolRun("deid", "replace_identifiers(default recipe, remove_private=True), one call")
    recipe = DeidRecipe()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            written = replace_identifiers(
                dicom_files=[str(p) for p in inputs],
                deid=recipe,
                save=True,
                overwrite=True,
                output_folder=str(out),
                remove_private=True,
            )
        except Exception as exc:
            written = []
            run.note = f"failed: {exc.__class__.__name__}"
    run.seconds = time.perf_counter() - t0
    by_name = {Path(w).name: Path(w) for w in written or []}
    for src in inputs:
        if src.name in by_name and by_name[src.name].exists():
            run.outputs[src] = by_name[src.name]
        else:
            run.failures += 1
    return run


def run_gdcmanon(inputs: list[Path], out: Path, work: Path) -> ToolRun:
    run = ToolRun(
        "gdcmanon", "gdcmanon -e (PS3.15 E.1.1, AES-256 to a certificate), one call per file"
    )
    key, cert = work / "key.pem", work / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=bench"],
        check=True, capture_output=True,
    )  # fmt: skip
    # folder mode (-i DIR) stops at the first object it cannot handle, so one call per file
    t0 = time.perf_counter()
    codes: dict[int, int] = {}
    for src in inputs:
        proc = subprocess.run(
            ["gdcmanon", "-e", "-c", str(cert), "-i", str(src), "-o", str(out / src.name)],
            capture_output=True, check=False,
        )  # fmt: skip
        codes[proc.returncode] = codes.get(proc.returncode, 0) + 1
    run.seconds = time.perf_counter() - t0
    for src in inputs:
        dst = out / src.name
        if dst.exists():
            run.outputs[src] = dst
        else:
            run.failures += 1
    run.note = "exit codes " + ", ".join(f"{k}: {v} files" for k, v in sorted(codes.items()))
    return run


class Orthanc:
    """A real Orthanc on loopback, driven over one keep-alive HTTP connection."""

    def __init__(self, work: Path, http_port: int = 18042, dicom_port: int = 18112) -> None:
        self.dir = work / "orthanc"
        self.port = http_port
        subprocess.run([str(PEER), "start", str(self.dir), str(http_port), str(dicom_port)],
                       check=True, capture_output=True)  # fmt: skip
        self.conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        headers = {"Content-Type": "application/dicom" if method == "POST" else "text/plain"}
        if body is not None and body[:1] == b"{":
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status} {data[:200]!r}")
        return data

    def version(self) -> str:
        return str(json.loads(self.request("GET", "/system"))["Version"])

    def stop(self) -> None:
        self.conn.close()
        subprocess.run([str(PEER), "stop", str(self.dir)], check=False, capture_output=True)


def run_orthanc(inputs: list[Path], out: Path, work: Path) -> tuple[ToolRun, ToolRun]:
    """Two timings: upload + /instances/{id}/anonymize + download, and anonymize + download
    of instances already stored."""
    orthanc = Orthanc(work)
    try:
        version = orthanc.version()
        e2e = ToolRun(f"Orthanc {version}", "REST: POST /instances, POST /instances/{id}/anonymize")
        stored = ToolRun(f"Orthanc {version}", "REST: anonymize + download only (already stored)")
        body = json.dumps({"Force": True, "KeepPrivateTags": False}).encode()
        ids: dict[Path, str] = {}
        e2e_times = []
        for attempt in range(3):
            if attempt:  # empty the server between runs (not timed)
                for pid in json.loads(orthanc.request("GET", "/patients")):
                    orthanc.request("DELETE", f"/patients/{pid}")
                assert json.loads(orthanc.request("GET", "/instances")) == []
            ids.clear()
            e2e.outputs.clear()
            e2e.failures = 0
            t0 = time.perf_counter()
            for src in inputs:
                try:
                    answer = json.loads(orthanc.request("POST", "/instances", src.read_bytes()))
                    ids[src] = answer["ID"]
                    data = orthanc.request("POST", f"/instances/{answer['ID']}/anonymize", body)
                    (out / src.name).write_bytes(data)
                    e2e.outputs[src] = out / src.name
                except Exception:
                    e2e.failures += 1
            e2e_times.append(time.perf_counter() - t0)
        e2e.seconds = sorted(e2e_times)[1]
        e2e.mode += " (median of 3, server emptied between runs)"
        times = []
        for _ in range(3):
            stored.outputs.clear()
            stored.failures = len(inputs) - len(ids)
            t0 = time.perf_counter()
            for src, oid in ids.items():
                try:
                    orthanc.request("POST", f"/instances/{oid}/anonymize", body)
                    stored.outputs[src] = out / src.name
                except Exception:
                    stored.failures += 1
            times.append(time.perf_counter() - t0)
        stored.seconds = sorted(times)[1]
        stored.mode += " (median of 3)"
    finally:
        orthanc.stop()
    return e2e, stored


# ----------------------------------------------------------------------------- scoring
def _walk(
    ds: Dataset, prefix: str = "", removed_by: str | None = None
) -> Iterator[tuple[str, DataElement, str | None, str | None]]:
    """(path, element, action under the Basic Profile, action of a removing ancestor)."""
    table, opts = annex_e(), DeidOptions()
    for elem in ds:
        tag = int(elem.tag)
        path = f"{prefix}{tag:08X}"
        if tag >> 16 & 1:
            action: str | None = "X"
        else:
            rule = table.lookup(tag)
            action = resolve_action(rule, opts, elem) if rule is not None else None
        yield path, elem, action, removed_by
        if elem.VR == "SQ":
            inner = removed_by or (action if action in {"X", "Z"} else None)
            for i, item in enumerate(elem.value):
                yield from _walk(item, f"{path}[{i}].", inner)


def _values(elem: object) -> list[str]:
    value = getattr(elem, "value", None)
    if value is None or value == "" or isinstance(value, bytes):
        return []
    if getattr(elem, "VM", 1) > 1:
        return [str(v) for v in value]
    return [str(value)]


def residual_attributes(src: Dataset, out: Dataset) -> int:
    """Attributes the Basic Profile removes or replaces that kept the input's value."""
    after: dict[str, list[str]] = {}
    seq_after: dict[str, int] = {}
    for path, elem, _, _ in _walk(out):
        if elem.VR == "SQ":
            seq_after[path] = len(elem.value)
        else:
            after[path] = _values(elem)
    count = 0
    for path, elem, action, removed_by in _walk(src):
        if elem.VR == "SQ":
            if action == "X" and removed_by is None and len(elem.value) and seq_after.get(path):
                count += 1
            continue
        values = _values(elem)
        if not values or path not in after:
            continue
        if removed_by is None and action in {"X", "Z", "D", "U"} and after[path] == values:
            count += 1
    return count


def phi_strings(src: Dataset) -> tuple[set[bytes], set[str]]:
    """Identifying values of the input (long enough not to match by chance) and UIDs to replace,
    without values the profile keeps elsewhere in the same object."""
    phi: set[str] = set()
    uids: set[str] = set()
    kept: list[str] = []
    for _path, elem, action, removed_by in _walk(src):
        if elem.VR == "SQ" or elem.VR in {"OB", "OW", "UN", "OF", "OD", "OL", "OV"}:
            continue
        values = _values(elem)
        hit = action in {"X", "Z", "D", "U"} or removed_by is not None
        if not hit:
            kept.extend(values)
        elif elem.VR == "UI" and action == "U":
            uids.update(v for v in values if not v.startswith("1.2.840.10008."))
        elif elem.VR in TEXT_VRS:
            for v in values:
                for token in {v.strip(), *re.split(r"[\^\s=]+", v)}:
                    if len(token) >= 5 and len(set(token)) > 2:
                        phi.add(token)
    phi = {p for p in phi if not any(p in k for k in kept)}
    uids = {u for u in uids if not any(u in k for k in kept)}
    return {p.encode("utf-8", "ignore") for p in phi if p.isascii()}, uids


def references(inputs: list[Path], outputs: dict[Path, Path]) -> tuple[int, int]:
    """(references that resolved in the input, of those still resolving in the output)."""
    targets = (0x00080018, 0x0020000E, 0x0020000D, 0x00200052)
    ids: dict[str, tuple[Path, int]] = {}
    datasets = {p: quiet_read(p) for p in inputs}
    for p, ds in datasets.items():
        for tag in targets:
            if tag in ds and ds[tag].value:
                ids.setdefault(str(ds[tag].value), (p, tag))
    out_ds = {p: quiet_read(o) for p, o in outputs.items()}
    total = kept = 0
    for p, ds in datasets.items():
        own = {str(ds[t].value) for t in targets if t in ds}
        for path, elem, _, _ in _walk(ds):
            if elem.VR != "UI" or "[" not in path:
                continue
            for uid in _values(elem):
                if uid not in ids or uid in own or ids[uid][0] == p:
                    continue
                total += 1
                target, tag = ids[uid]
                if p not in out_ds or target not in out_ds or tag not in out_ds[target]:
                    continue
                new = str(out_ds[target][tag].value)
                out_values = {v for q, e, _, _ in _walk(out_ds[p]) if q == path for v in _values(e)}
                kept += new in out_values
    return total, kept


def dciodvfy_errors(path: Path) -> set[str] | None:
    proc = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    lines = (proc.stdout + proc.stderr).splitlines()
    if any("Dicom dataset read failed" in ln for ln in lines):
        return None
    return {re.sub(r"= ?<[^>]*>", "=<V>", ln) for ln in lines if ln.startswith("Error")}


@dataclass
class Score:
    residual_total: int = 0
    files_with_residual: int = 0
    phi_hits: int = 0
    files_with_phi: int = 0
    refs_total: int = 0
    refs_kept: int = 0
    new_dciodvfy: int = 0
    examples: list[str] = field(default_factory=list)


def score(run: ToolRun, inputs: list[Path], before_errors: dict[Path, set[str] | None]) -> Score:
    s = Score()
    for src in inputs:
        if src not in run.outputs:
            continue
        dst = run.outputs[src]
        try:
            src_ds, out_ds = quiet_read(src), quiet_read(dst)
        except Exception:
            continue
        n = residual_attributes(src_ds, out_ds)
        s.residual_total += n
        s.files_with_residual += n > 0
        phi, uids = phi_strings(src_ds)
        data = dst.read_bytes()
        hits = [p.decode() for p in phi if p in data] + [u for u in uids if u.encode() in data]
        s.phi_hits += len(hits)
        s.files_with_phi += bool(hits)
        if hits and len(s.examples) < 3:
            s.examples.append(f"{src.name}: {', '.join(sorted(hits)[:3])}")
        before = before_errors.get(src)
        if before is not None:
            after = dciodvfy_errors(dst)
            s.new_dciodvfy += after is None or bool(after - before)
    s.refs_total, s.refs_kept = references(inputs, run.outputs)
    return s


# ----------------------------------------------------------------------------- report
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"


NOTES = [
    "- files/s counts the files each tool wrote, over the wall time of the whole run (read, "
    "de-identify, write). On this shared 2-core machine single runs varied by up to ±40 % "
    "(Carina one process 167-246 files/s, Orthanc upload+anonymize 86-143 files/s over five "
    "runs of this script).",
    "- Orthanc is measured two ways on one fresh server: upload (POST /instances) plus "
    "POST /instances/{id}/anonymize with the anonymized file as the answer, and the anonymize call "
    "alone on instances already stored; only the first is comparable to the other tools, which "
    "read and write files. Per-instance anonymize gives each call new random UIDs, so references "
    "between objects are lost (Orthanc keeps them only when a whole patient/study/series is "
    "anonymized in one call, which was not measured). 'failed' for Orthanc: files it refused to "
    "store or anonymize.",
    "- gdcmanon in folder mode stops at the first object it cannot process, so it was run once "
    "per file (process start-up included). In -e mode it moves the original values into an "
    "Encrypted Attributes Sequence, encrypted to a test certificate.",
    "- deid runs its default recipe (deid.dicom) with remove_private=True; dicognito its default "
    "Anonymizer (it replaces names, IDs and dates with consistent fake values and keeps most "
    "descriptions, hence the residual counts).",
    "- No peer cleans burned-in text; Carina's Clean Pixel Data (OCR) is not in these timings.",
]


def write_report(
    path: Path, runs: list[tuple[ToolRun, Score | None]], inputs: list[Path], total_mb: float
) -> str:
    lines = [
        "# De-identification benchmark",
        "",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Machine: {machine()}.",
        f"Input: {len(inputs)} files ({total_mb:.1f} MB), every stored object with File Meta "
        "Information of "
        "`shared/data/dicom_variants` and `shared/data/deid_fake_phi` (CT, MR, US, SC, SEG, SR, "
        "RT, WSI, ECG, all transfer syntaxes), the same files for every tool in one run. "
        "Produced by `python bench/deid.py`.",
        "",
        "Residual attributes: attributes that DICOM PS3.15 2024b Table E.1-1 (Basic Profile) "
        "removes or replaces, or private attributes, still present in the output with the input's "
        "value. Removed values found in bytes: the values of such attributes (≥ 5 characters: "
        "names, IDs, dates, institutions, but also descriptions) and the UIDs to replace, searched "
        "in the output bytes. References: UIDs naming another input object's instance, series, "
        "study or frame of reference that still name the same object's UID after "
        "de-identification. New dciodvfy: output files with an error the input did not have "
        "(files dciodvfy cannot parse skipped).",
        "",
        "| tool | mode | files/s | failed | residual attributes (total / files) | removed values "
        "found in bytes (total / files) | references kept | new dciodvfy errors (files) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run, s in runs:
        rate = (len(run.outputs) / run.seconds) if run.seconds else 0.0
        if s is None:
            lines.append(
                f"| {run.name} | {run.mode} | {rate:.1f} | {run.failures} | - | - | - | - |"
            )
            continue
        refs = f"{s.refs_kept}/{s.refs_total}"
        lines.append(
            f"| {run.name} | {run.mode} | {rate:.1f} | {run.failures} | "
            f"{s.residual_total} / {s.files_with_residual} | {s.phi_hits} / {s.files_with_phi} | "
            f"{refs} | {s.new_dciodvfy} |"
        )
    lines.append("")
    for run, s in runs:
        if s is not None and s.examples:
            lines.append(f"- {run.name} ({run.mode}), values found: " + "; ".join(s.examples))
        if run.note:
            lines.append(f"- {run.name}: {run.note}")
    lines += ["", "Notes:", "", *NOTES]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-files", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "deid.md")
    parser.add_argument("--skip", nargs="*", default=[], help="tools to leave out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carina-bench-deid-") as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        inputs = build_inputs(work / "in", args.min_files)
        total_mb = sum(p.stat().st_size for p in inputs) / 1e6
        print(f"{len(inputs)} input files, {total_mb:.1f} MB", flush=True)
        tools: list[tuple[str, Callable[[Path], list[ToolRun]]]] = [
            ("carina", lambda o: [median_of(3, lambda: run_carina(inputs, o))]),
            ("carina-2", lambda o: [median_of(3, lambda: run_carina_parallel(inputs, o, 2))]),
            ("orthanc", lambda o: list(run_orthanc(inputs, o, work))),
            ("dicognito", lambda o: [median_of(3, lambda: run_dicognito(inputs, o))]),
            ("deid", lambda o: [run_deid(inputs, o)]),
            ("gdcmanon", lambda o: [run_gdcmanon(inputs, o, work)]),
        ]
        before_errors = {p: dciodvfy_errors(p) for p in inputs}
        runs: list[tuple[ToolRun, Score | None]] = []
        for name, fn in tools:
            if name in args.skip:
                continue
            out = work / f"out-{name}"
            out.mkdir()
            for i, run in enumerate(fn(out)):
                rate = len(run.outputs) / run.seconds if run.seconds else 0
                print(f"{run.name} [{run.mode}]: {len(run.outputs)} files in {run.seconds:.2f} s "
                      f"= {rate:.1f} files/s, {run.failures} failed", flush=True)  # fmt: skip
                runs.append((run, score(run, inputs, before_errors) if i == 0 else None))
        print(write_report(args.out, runs, inputs, total_mb))


if __name__ == "__main__":
    main()

"""The permission matrix: every route x every role x own/foreign project, from the tables below.

``EXPECTED_GRANTS`` restates the policy table (and is checked against it); ``ROUTE_ACTIONS`` names
the action every non-public route must declare. A route missing from it, or one that declares no
access dependency and is not public, fails.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.routing import iter_route_contexts

from carina.annotation import ShapeKind
from carina.api.security import PUBLIC_ROUTES, declared_action
from carina.auth import Role
from carina.auth.policy import GRANTS, SITE_ACTIONS
from carina.core.geometry import Geometry
from carina.core.labels import Label, LabelSet
from carina.core.volume import LabelMap
from carina.dicom.seg import build_segmentation
from carina.services.pacs_sync import SyncRules
from tests.dicom_factory import ct_series, ct_slices_with_geometry

from .conftest import Site

ALL = {"owner", "manager", "annotator", "reviewer", "viewer"}
EXPECTED_GRANTS: dict[str, set[str]] = {
    "project.read": ALL,
    "study.read": ALL,
    "study.store": {"owner", "manager", "annotator"},
    "project.studies.manage": {"owner", "manager"},
    "project.members.manage": {"owner", "manager"},
    "project.owner.assign": {"owner"},
    "project.deid.manage": {"owner", "manager"},
    "project.reidentify": {"owner"},
    "job.submit": {"owner", "manager", "annotator"},
    "job.read": ALL,
    "job.cancel": {"owner", "manager", "annotator"},
    "job.prioritize": {"owner", "manager"},
    "job.cancel.force": {"owner", "manager"},
    "annotation.read": ALL,
    "annotation.write": {"owner", "manager", "annotator"},
    "annotation.review": {"owner", "manager", "reviewer"},
    "annotation.manage": {"owner", "manager"},
}
EXPECTED_SITE_ACTIONS = {"self.read", "self.manage", "project.create", "project.list"}

_WADO = [
    "/studies/{study}",
    "/studies/{study}/series/{series}",
    "/studies/{study}/series/{series}/instances/{sop}",
    "/studies/{study}/metadata",
    "/studies/{study}/series/{series}/metadata",
    "/studies/{study}/series/{series}/instances/{sop}/metadata",
    "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
    "/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}",
    "/studies/{study}/series/{series}/instances/{sop}/rendered",
    "/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered",
    "/studies/{study}/rendered",
    "/studies/{study}/series/{series}/rendered",
    "/studies/{study}/thumbnail",
    "/studies/{study}/series/{series}/thumbnail",
    "/studies/{study}/series/{series}/instances/{sop}/thumbnail",
]
_QIDO = [
    "/studies",
    "/series",
    "/instances",
    "/studies/{study}/series",
    "/studies/{study}/instances",
    "/studies/{study}/series/{series}/instances",
]
_DICOMWEB: dict[tuple[str, str], str] = {
    **{("GET", p): "study.read" for p in _WADO + _QIDO},
    ("POST", "/studies"): "study.store",
    ("POST", "/studies/{study}"): "study.store",
}
_VERSION = "/api/projects/{project}/segmentations/{seg_id}/versions/{version_id}"
_SERIES = "/api/projects/{project}/studies/{study}/series/{series}"
ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    ("POST", "/api/auth/logout"): "self.manage",
    ("GET", "/api/users/me"): "self.read",
    ("POST", "/api/users/me/password"): "self.manage",
    ("GET", "/api/users"): "users.manage",
    ("POST", "/api/users"): "users.manage",
    ("PATCH", "/api/users/{user}"): "users.manage",
    ("GET", "/api/tokens"): "self.read",
    ("POST", "/api/tokens"): "self.manage",
    ("DELETE", "/api/tokens/{token_id}"): "self.manage",
    ("GET", "/api/projects"): "project.list",
    ("POST", "/api/projects"): "project.create",
    ("GET", "/api/projects/{project}"): "project.read",
    ("GET", "/api/projects/{project}/members"): "project.read",
    ("PUT", "/api/projects/{project}/members/{user}"): "project.members.manage",
    ("DELETE", "/api/projects/{project}/members/{user}"): "project.members.manage",
    ("GET", "/api/projects/{project}/studies"): "study.read",
    ("POST", "/api/projects/{project}/studies"): "project.studies.manage",
    ("DELETE", "/api/projects/{project}/studies/{study}"): "project.studies.manage",
    ("GET", "/api/audit"): "audit.read",
    ("POST", "/api/instances"): "study.store",
    ("GET", "/api/projects/{project}/deid"): "project.read",
    ("PUT", "/api/projects/{project}/deid"): "project.deid.manage",
    ("POST", "/api/projects/{project}/reidentify"): "project.reidentify",
    ("GET", "/api/projects/{project}/deid/rules"): "study.read",
    ("POST", "/api/projects/{project}/deid/pseudonym"): "study.store",
    ("GET", "/api/projects/{project}/studies/{study}/series/{series}/volume"): "study.read",
    ("GET", "/api/projects/{project}/studies/{study}/series/{series}/render"): "study.read",
    ("GET", _SERIES + "/frames"): "study.read",
    ("GET", _SERIES + "/segmentations"): "study.read",
    ("POST", _SERIES + "/grow"): "annotation.write",
    ("GET", _SERIES + "/segmentations/{seg_series}/labelmap"): "study.read",
    ("GET", _SERIES + "/segmentations/{seg_series}/meshes/{value}"): "study.read",
    ("POST", "/api/projects/{project}/jobs"): "job.submit",
    ("GET", "/api/projects/{project}/jobs"): "job.read",
    ("GET", "/api/projects/{project}/jobs/events"): "job.read",
    ("GET", "/api/projects/{project}/jobs/{job_id}"): "job.read",
    ("POST", "/api/projects/{project}/jobs/{job_id}/cancel"): "job.cancel",
    ("GET", "/api/projects/{project}/label-sets"): "annotation.read",
    ("POST", "/api/projects/{project}/label-sets"): "annotation.manage",
    ("GET", "/api/projects/{project}/segmentations"): "annotation.read",
    ("POST", "/api/projects/{project}/segmentations"): "annotation.write",
    ("GET", "/api/projects/{project}/segmentations/{seg_id}"): "annotation.read",
    ("POST", "/api/projects/{project}/segmentations/{seg_id}/versions"): "annotation.write",
    ("GET", _VERSION): "annotation.read",
    ("GET", _VERSION + "/diff"): "annotation.read",
    ("GET", _VERSION + "/seg"): "annotation.read",
    ("GET", _VERSION + "/nifti"): "annotation.read",
    ("GET", _VERSION + "/slicer"): "annotation.read",
    ("POST", "/api/projects/{project}/segmentations/{seg_id}/import"): "annotation.write",
    ("GET", "/api/projects/{project}/shapes"): "annotation.read",
    ("POST", "/api/projects/{project}/shapes"): "annotation.write",
    ("GET", "/api/projects/{project}/studies/{study}/series/{series}/shapes/sr"): "annotation.read",
    ("POST", "/api/projects/{project}/shapes/sr"): "annotation.write",
    ("GET", "/api/projects/{project}/tasks"): "annotation.read",
    ("GET", "/api/projects/{project}/queue"): "annotation.read",
    ("POST", "/api/projects/{project}/tasks"): "annotation.manage",
    ("GET", "/api/projects/{project}/tasks/{task_id}"): "annotation.read",
    ("POST", "/api/projects/{project}/tasks/{task_id}/transition"): "annotation.write",
    ("POST", "/api/projects/{project}/tasks/{task_id}/review"): "annotation.review",
    ("GET", "/api/projects/{project}/tasks/{task_id}/agreement"): "annotation.read",
    ("POST", "/api/projects/{project}/tasks/{task_id}/consensus"): "annotation.manage",
    ("GET", "/api/projects/{project}/annotation-dashboard"): "annotation.read",
    ("GET", "/api/projects/{project}/pacs-rules"): "project.studies.manage",
    ("POST", "/api/projects/{project}/pacs-rules"): "project.studies.manage",
    ("DELETE", "/api/projects/{project}/pacs-rules/{rule_id}"): "project.studies.manage",
    ("POST", "/api/projects/{project}/pacs-rules/{rule_id}/run"): "project.studies.manage",
    **{(m, "/dicom-web" + p): a for (m, p), a in _DICOMWEB.items()},
    **{(m, "/projects/{project}/dicom-web" + p): a for (m, p), a in _DICOMWEB.items()},
}
EXPECTED_PUBLIC = {
    ("GET", "/api/openapi.json"),
    ("GET", "/api/docs"),
    ("GET", "/api/docs/oauth2-redirect"),
    ("GET", "/api/health"),
    ("POST", "/api/auth/token"),
    ("POST", "/api/auth/login"),
}
SEG_STUDY = "1.2.826.0.1.3680043.10.4.{number}"
# project -> (study, image series, SEG series) for the segmentation routes
_SEGMENTED: dict[str, tuple[str, str, str]] = {}


@pytest.fixture(scope="module", autouse=True)
def segmentations(site: Site) -> None:
    """Per project, a small CT study with a SEG of it, for the segmentation routes."""
    for project, number in (("alpha", 1), ("beta", 2)):
        array = np.zeros((4, 8, 8), dtype=np.int16)
        array[1:3, 2:6, 2:6] = 100
        parts = ct_series(array, spacing=(1.0, 1.0, 2.0), study_uid=SEG_STUDY.format(number=number))
        sources = [pydicom.dcmread(io.BytesIO(p)) for p in parts]
        volume = np.asarray(array).transpose(2, 1, 0)
        geometry = Geometry.from_components(
            shape=(8, 8, 4),
            spacing=(1.0, 1.0, 2.0),
            frame_of_reference_uid=sources[0].FrameOfReferenceUID,
        )
        labels = LabelMap((volume > 0).astype(np.uint8), geometry, labels=LabelSet([Label(1, "x")]))
        seg = build_segmentation(labels, sources)
        buffer = io.BytesIO()
        seg.save_as(buffer, enforce_file_format=True)
        results = site.app.state.archive.ingest([(None, p) for p in [*parts, buffer.getvalue()]])
        assert all(r.status.ok for r in results)
        site.store.add_studies(project, [str(sources[0].StudyInstanceUID)])
        _SEGMENTED[project] = (
            str(sources[0].StudyInstanceUID),
            str(sources[0].SeriesInstanceUID),
            str(seg.SeriesInstanceUID),
        )


CALLERS = ("admin", "owner", "manager", "annotator", "reviewer", "viewer", "outsider", None)


def _declared(route: Any) -> set[str]:
    actions: set[str] = set()
    if not hasattr(route, "dependant"):
        return actions
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        action = declared_action(dependant.call)
        if action is not None:
            actions.add(action.value)
        stack.extend(dependant.dependencies)
    return actions


def _routes(site: Site) -> list[tuple[str, str, Any]]:
    """(method, path, route) of every route the application serves."""
    found = []
    for context in iter_route_contexts(site.app.routes):
        route = context._effective_route
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, str(context.path), route))
    return found


def test_policy_table_is_the_documented_one() -> None:
    assert {a.value: {r.value for r in roles} for a, roles in GRANTS.items()} == EXPECTED_GRANTS
    assert {a.value for a in SITE_ACTIONS} == EXPECTED_SITE_ACTIONS
    assert {r.value for r in Role} == ALL


def test_every_route_declares_its_access(site: Site) -> None:
    seen: dict[tuple[str, str], str] = {}
    undeclared = []
    for method, path, route in _routes(site):
        key = (method, path)
        declared = _declared(route)
        if key in PUBLIC_ROUTES:
            assert not declared, key
            continue
        if len(declared) != 1:
            undeclared.append(key)
            continue
        seen[key] = declared.pop()
    assert undeclared == [], "routes without a declared permission"
    assert seen == ROUTE_ACTIONS
    assert set(PUBLIC_ROUTES) == EXPECTED_PUBLIC


def test_openapi_lists_every_route_with_stable_unique_operation_ids(site: Site) -> None:
    spec = site.client.get("/api/openapi.json").json()
    operations = [
        (method.upper(), path, op["operationId"])
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]
    ids = [op for _, _, op in operations]
    assert len(ids) == len(set(ids))
    documented = {(m, p) for m, p, _ in operations}
    assert documented == set(ROUTE_ACTIONS) | {
        k for k in EXPECTED_PUBLIC if "/docs" not in k[1] and "openapi" not in k[1]
    }
    names = {(m, p): op for m, p, op in operations}
    assert names[("POST", "/api/auth/token")] == "issue_token"
    assert names[("GET", "/projects/{project}/dicom-web/studies")] == "project_search_studies"
    assert names[("GET", "/dicom-web/studies")] == "site_search_studies"
    secured = spec["paths"]["/api/users/me"]["get"]["security"]
    assert {"HTTPBearer": []} in secured


def _expected(caller: str | None, action: str, project: str | None) -> str:
    """'ok', or the status code a denial must have."""
    if caller is None:
        return "401"
    if caller == "admin":
        return "ok"
    if project is None:
        return "ok" if action in EXPECTED_SITE_ACTIONS else "403"
    role = {
        "alpha": caller if caller in ALL else None,
        "beta": "owner" if caller == "outsider" else None,
    }[project]
    if role is None:
        return "404"
    return "ok" if role in EXPECTED_GRANTS[action] else "403"


def _url(site: Site, path: str, project: str | None, caller: str | None) -> str:
    uids = site.studies[project or "alpha"]
    token_id = "0"
    if caller is not None:
        principal = site.principals[caller]
        token_id = str(site.store.issue_token(principal.user_id, "personal", None, "probe").id)
    values = {
        "project": project or "",
        "study": uids.study,
        "series": uids.series,
        "sop": uids.sop,
        "frames": "1",
        "frame": "1",
        "tag": "7FE00010",
        "user": "target",
        "token_id": token_id,
        "job_id": str(site.jobs[project or "alpha"]),
        "value": "1",
    }
    if any(key in path for key in ("{seg_id}", "{version_id}", "{task_id}", "/shapes/sr")):
        # annotation objects live on a series with plane geometry (an SR needs one shape)
        values.update(_annotation_ids(site, project or "alpha"))
    if "{rule_id}" in path:  # a fresh rule each time: a permitted DELETE removes it
        rules = SyncRules(site.app.state.archive.engine)
        values["rule_id"] = str(rules.create(project or "alpha", peer="PACS", modality="CT").id)
    if "{seg_series}" in path:
        study, series, seg_series = _SEGMENTED[project or "alpha"]
        values.update(study=study, series=series, seg_series=seg_series)
    url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
    # the event stream stays open unless asked to end
    return url + "?timeout=0" if url.endswith("/jobs/events") else url


_ANNOTATIONS: dict[tuple[int, str], dict[str, str]] = {}


def _annotation_ids(site: Site, project: str) -> dict[str, str]:
    """A segmentation with one version and a task in ``project``, on a series with geometry
    (made once per site)."""
    key = (id(site), project)
    if key not in _ANNOTATIONS:
        number = 1 if project == "alpha" else 2
        study, series = f"1.2.826.0.1.3680043.10.7.{number}", f"1.2.826.0.1.3680043.10.8.{number}"
        results = site.app.state.archive.ingest(
            [(None, data) for data in ct_slices_with_geometry(study, series)]
        )
        assert all(r.status.ok for r in results)
        site.store.add_studies(project, [study])
        service = site.app.state.annotations
        service.store.create_label_set(project, "probe", LabelSet([Label(1, "lesion")]))
        owner = site.principals["owner" if project == "alpha" else "outsider"]
        seg = service.create_segmentation(
            project, study_uid=study, series_uid=series, label_set="probe", name="", user_id=1
        )
        labels = np.zeros((2, 8, 8), dtype=np.uint8)
        labels[0, 2:4, 2:5] = 1
        version = service.store.save_version(
            project, seg.id, labels, parent_id=None, author_id=owner.user_id
        )
        task = service.create_task(
            project,
            study_uid=study,
            series_uid=series,
            label_set="probe",
            assignees=[owner.name],
            user_id=owner.user_id,
        )
        (first, *_) = site.app.state.archive.instances(study, series)
        service.store.add_shape(
            project,
            study_uid=study,
            series_uid=series,
            sop_uid=first.sop_instance_uid,
            frame_of_reference_uid="",
            kind=ShapeKind.POINT,
            points=[[-1.0, -2.0, 10.0]],
            label="probe",
            author_id=owner.user_id,
        )
        _ANNOTATIONS[key] = {
            "study": study,
            "series": series,
            "seg_id": str(seg.id),
            "version_id": str(version.id),
            "task_id": str(task.id),
        }
    return _ANNOTATIONS[key]


def _restore(site: Site, project: str | None) -> None:
    for name in ("alpha", "beta"):
        site.store.add_studies(name, [site.studies[name].study])
        owner = site.principals["owner" if name == "alpha" else "outsider"]
        site.store.set_member(owner, name, "target", Role.VIEWER)


@pytest.mark.parametrize(("method", "path"), sorted(ROUTE_ACTIONS), ids=lambda v: str(v))
def test_permission_matrix(site: Site, method: str, path: str) -> None:
    action = ROUTE_ACTIONS[(method, path)]
    projects: list[str | None] = ["alpha", "beta"] if "{project}" in path else [None]
    problems: list[Any] = []
    for project in projects:
        for caller in CALLERS:
            expected = _expected(caller, action, project)
            url = _url(site, path, project, caller)
            kwargs: dict[str, Any] = {"headers": site.headers(caller)}
            if method in ("POST", "PUT", "PATCH"):
                kwargs["json"] = {}
            response = site.client.request(method, url, **kwargs)
            status = response.status_code
            if expected == "ok":
                good = status < 500 and status not in (401, 403, 404)
                good = good and (method != "GET" or status == 200)
            else:
                good = str(status) == expected
            if not good:
                problems.append((caller, project, expected, status, response.text[:80]))
            _restore(site, project)
    assert problems == []


def test_denied_responses_do_not_tell_foreign_from_missing(site: Site) -> None:
    headers = site.headers("viewer")
    foreign = site.studies["beta"]
    values = {
        "study": foreign.study,
        "series": foreign.series,
        "sop": foreign.sop,
        "frames": "1",
        "frame": "1",
        "tag": "7FE00010",
    }
    for path in _WADO:
        real = "/projects/alpha/dicom-web" + path
        guessed = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], real)
        missing = guessed.replace(foreign.study, "1.2.3.999")
        a = site.client.get(guessed, headers=headers)
        b = site.client.get(missing, headers=headers)
        assert (
            (a.status_code, a.json()) == (b.status_code, b.json()) == (404, {"detail": "not found"})
        )
    # a project one is not a member of looks like one that does not exist
    a = site.client.get("/projects/beta/dicom-web/studies", headers=headers)
    b = site.client.get("/projects/nosuch/dicom-web/studies", headers=headers)
    assert (a.status_code, a.json()) == (b.status_code, b.json())


def test_own_study_with_foreign_series_or_instance_is_not_found(site: Site) -> None:
    headers = site.headers("viewer")
    own, foreign = site.studies["alpha"], site.studies["beta"]
    base = f"/projects/alpha/dicom-web/studies/{own.study}"
    for path in (
        f"{base}/series/{foreign.series}",
        f"{base}/series/{foreign.series}/metadata",
        f"{base}/series/{foreign.series}/instances/{foreign.sop}",
        f"{base}/series/{own.series}/instances/{foreign.sop}",
        f"{base}/series/{foreign.series}/instances/{foreign.sop}/frames/1",
        f"{base}/series/{foreign.series}/instances/{foreign.sop}/rendered",
    ):
        assert site.client.get(path, headers=headers).status_code == 404, path
    qido = site.client.get(f"{base}/series/{foreign.series}/instances", headers=headers)
    assert qido.json() == []

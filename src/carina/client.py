"""Python SDK of the Carina REST API (httpx).

>>> client = CarinaClient.login("https://carina.example.org", "alice", password)
>>> client.create_project("lung-screening")
"""

from __future__ import annotations

import gzip
from types import TracebackType
from typing import Any

import httpx
import numpy as np


class CarinaAPIError(Exception):
    """The server answered with an error status."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class CarinaClient:
    """A client of one Carina server, authenticated with a bearer token."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport, verify=verify
        )

    @classmethod
    def login(
        cls,
        url: str,
        username: str,
        password: str,
        *,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> CarinaClient:
        """A client holding an access token obtained with the OAuth2 password flow."""
        with httpx.Client(base_url=url.rstrip("/"), transport=transport, verify=verify) as http:
            response = http.post(
                "/api/auth/token", data={"username": username, "password": password}
            )
            token = _json(response)["access_token"]
        return cls(url, token, transport=transport, verify=verify)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> CarinaClient:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request to ``path`` and return its decoded JSON (``None`` when empty)."""
        return _json(self._http.request(method, path, **kwargs))

    # -- users and tokens -------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """The signed-in user and their project roles."""
        result: dict[str, Any] = self.request("GET", "/api/users/me")
        return result

    def users(self) -> list[dict[str, Any]]:
        """Every user (administrators)."""
        result: list[dict[str, Any]] = self.request("GET", "/api/users")
        return result

    def create_user(self, name: str, password: str, *, admin: bool = False) -> dict[str, Any]:
        """Create a user (administrators)."""
        body = {"name": name, "password": password, "is_admin": admin}
        result: dict[str, Any] = self.request("POST", "/api/users", json=body)
        return result

    def create_token(self, name: str, expires_in_days: int | None = 90) -> dict[str, Any]:
        """A personal token; its value (``token``) is returned only here."""
        body = {"name": name, "expires_in_days": expires_in_days}
        result: dict[str, Any] = self.request("POST", "/api/tokens", json=body)
        return result

    def tokens(self) -> list[dict[str, Any]]:
        """The caller's personal tokens."""
        result: list[dict[str, Any]] = self.request("GET", "/api/tokens")
        return result

    def revoke_token(self, token_id: int) -> None:
        """Revoke a personal token."""
        self.request("DELETE", f"/api/tokens/{token_id}")

    def logout(self) -> None:
        """Revoke the token this client uses."""
        self.request("POST", "/api/auth/logout")

    # -- projects ---------------------------------------------------------------------------

    def projects(self) -> list[dict[str, Any]]:
        """The caller's projects."""
        result: list[dict[str, Any]] = self.request("GET", "/api/projects")
        return result

    def create_project(self, name: str, title: str = "") -> dict[str, Any]:
        """Create a project owned by the caller."""
        result: dict[str, Any] = self.request(
            "POST", "/api/projects", json={"name": name, "title": title}
        )
        return result

    def members(self, project: str) -> list[dict[str, Any]]:
        """The members of a project."""
        result: list[dict[str, Any]] = self.request("GET", f"/api/projects/{project}/members")
        return result

    def set_member(self, project: str, user: str, role: str) -> dict[str, Any]:
        """Add a member to a project or change their role."""
        result: dict[str, Any] = self.request(
            "PUT", f"/api/projects/{project}/members/{user}", json={"role": role}
        )
        return result

    def remove_member(self, project: str, user: str) -> None:
        """Remove a member from a project."""
        self.request("DELETE", f"/api/projects/{project}/members/{user}")

    def studies(self, project: str) -> list[str]:
        """The StudyInstanceUIDs of a project."""
        result: list[str] = self.request("GET", f"/api/projects/{project}/studies")["study_uids"]
        return result

    def add_studies(self, project: str, study_uids: list[str]) -> list[str]:
        """Add stored studies to a project; returns those newly added."""
        result: list[str] = self.request(
            "POST", f"/api/projects/{project}/studies", json={"study_uids": study_uids}
        )["study_uids"]
        return result

    def remove_study(self, project: str, study_uid: str) -> None:
        """Take a study out of a project."""
        self.request("DELETE", f"/api/projects/{project}/studies/{study_uid}")

    def dicomweb_url(self, project: str | None = None) -> str:
        """The DICOMweb root of a project (or of the whole archive, for administrators)."""
        return f"{self.url}/projects/{project}/dicom-web" if project else f"{self.url}/dicom-web"

    # -- jobs -------------------------------------------------------------------------------

    def submit_job(
        self,
        project: str,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        resources: dict[str, float] | None = None,
        max_attempts: int = 1,
        timeout_s: float | None = None,
        priority: int = 0,
    ) -> dict[str, Any]:
        """Submit a job to a project; the queued job (with its ``queue_position``)."""
        body = {
            "kind": kind,
            "params": params or {},
            "resources": resources or {},
            "max_attempts": max_attempts,
            "timeout_s": timeout_s,
            "priority": priority,
        }
        result: dict[str, Any] = self.request("POST", f"/api/projects/{project}/jobs", json=body)
        return result

    def jobs(
        self, project: str, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The jobs of a project, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        result: list[dict[str, Any]] = self.request(
            "GET", f"/api/projects/{project}/jobs", params=params
        )
        return result

    def job(self, project: str, job_id: int) -> dict[str, Any]:
        """One job of a project, with its log."""
        result: dict[str, Any] = self.request("GET", f"/api/projects/{project}/jobs/{job_id}")
        return result

    def cancel_job(self, project: str, job_id: int) -> dict[str, Any]:
        """Request cancellation of a job."""
        result: dict[str, Any] = self.request(
            "POST", f"/api/projects/{project}/jobs/{job_id}/cancel"
        )
        return result

    # -- annotation -------------------------------------------------------------------------

    def label_sets(self, project: str) -> list[dict[str, Any]]:
        """The label sets of a project."""
        result: list[dict[str, Any]] = self.request("GET", f"/api/projects/{project}/label-sets")
        return result

    def create_label_set(
        self, project: str, name: str, labels: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """A new label set: ``labels`` as ``[{"value": 1, "name": ..., "color": [r, g, b]}]``."""
        result: dict[str, Any] = self.request(
            "POST", f"/api/projects/{project}/label-sets", json={"name": name, "labels": labels}
        )
        return result

    def create_segmentation(
        self, project: str, study: str, series: str, label_set: str, name: str = ""
    ) -> dict[str, Any]:
        """A new, empty segmentation of a stored series (its ``shape`` is slices, rows, cols)."""
        body = {"study": study, "series": series, "label_set": label_set, "name": name}
        result: dict[str, Any] = self.request(
            "POST", f"/api/projects/{project}/segmentations", json=body
        )
        return result

    def segmentation(self, project: str, seg_id: int) -> dict[str, Any]:
        """A segmentation with its version history."""
        result: dict[str, Any] = self.request(
            "GET", f"/api/projects/{project}/segmentations/{seg_id}"
        )
        return result

    def save_labels(
        self,
        project: str,
        seg_id: int,
        labels: np.ndarray[Any, Any],
        *,
        parent: int | None = None,
        tool: str = "",
        model: str = "",
        model_version: str = "",
        comment: str = "",
    ) -> dict[str, Any]:
        """Save a uint8/uint16 label map in (slice, row, column) order as a new version on
        ``parent`` (sent gzipped). A stale parent raises :class:`CarinaAPIError` 409."""
        array = np.ascontiguousarray(labels)
        if array.dtype not in (np.uint8, np.uint16) or array.ndim != 3:
            raise ValueError("labels must be a 3-axis uint8 or uint16 array")
        params: dict[str, Any] = {
            "tool": tool,
            "model": model,
            "model_version": model_version,
            "comment": comment,
        }
        if parent is not None:
            params["parent"] = parent
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Encoding": "gzip",
            "X-Carina-Shape": ",".join(str(n) for n in array.shape),
            "X-Carina-Dtype": array.dtype.name,
        }
        body = gzip.compress(array.astype(array.dtype.newbyteorder("<")).tobytes(), 6)
        result: dict[str, Any] = self.request(
            "POST",
            f"/api/projects/{project}/segmentations/{seg_id}/versions",
            content=body,
            params=params,
            headers=headers,
        )
        return result

    def labels(self, project: str, seg_id: int, version_id: int) -> np.ndarray[Any, Any]:
        """The label map of a version, (slice, row, column)."""
        response = self._http.get(
            f"/api/projects/{project}/segmentations/{seg_id}/versions/{version_id}",
            headers={"Accept-Encoding": "gzip"},
        )
        if response.status_code >= 400:
            _json(response)
        shape = tuple(int(n) for n in response.headers["X-Carina-Shape"].split(","))
        dtype = np.dtype(response.headers["X-Carina-Dtype"]).newbyteorder("<")
        return np.frombuffer(response.content, dtype=dtype).reshape(shape)

    def import_labels(
        self,
        project: str,
        seg_id: int,
        data: bytes,
        format: str,
        *,
        parent: int | None = None,
        model: str = "",
        model_version: str = "",
        comment: str = "",
    ) -> dict[str, Any]:
        """Import a DICOM SEG (``format="seg"``) or NIfTI (``"nifti"``) file as a new version."""
        params: dict[str, Any] = {
            "format": format,
            "model": model,
            "model_version": model_version,
            "comment": comment,
        }
        if parent is not None:
            params["parent"] = parent
        result: dict[str, Any] = self.request(
            "POST",
            f"/api/projects/{project}/segmentations/{seg_id}/import",
            content=data,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
        )
        return result

    def export_labels(self, project: str, seg_id: int, version_id: int, format: str) -> bytes:
        """A version as DICOM SEG (``format="seg"``) or gzipped NIfTI (``"nifti"``) bytes."""
        response = self._http.get(
            f"/api/projects/{project}/segmentations/{seg_id}/versions/{version_id}/{format}"
        )
        if response.status_code >= 400:
            _json(response)
        return response.content

    def create_task(self, project: str, **task: Any) -> dict[str, Any]:
        """A task: study, series, label_set, assignees, and optionally title, instructions,
        milestone, due_at (ISO 8601)."""
        result: dict[str, Any] = self.request("POST", f"/api/projects/{project}/tasks", json=task)
        return result

    def queue(self, project: str) -> list[dict[str, Any]]:
        """The caller's open, in-progress and returned tasks."""
        result: list[dict[str, Any]] = self.request("GET", f"/api/projects/{project}/queue")
        return result

    def submit_task(self, project: str, task_id: int) -> dict[str, Any]:
        """Submit the caller's part of a task for review."""
        result: dict[str, Any] = self.request(
            "POST",
            f"/api/projects/{project}/tasks/{task_id}/transition",
            json={"action": "submit"},
        )
        return result

    def review_task(
        self, project: str, task_id: int, annotator: str, accept: bool, comment: str = ""
    ) -> dict[str, Any]:
        """Accept an annotator's part of a task, or return it with a comment."""
        body = {
            "annotator": annotator,
            "decision": "accept" if accept else "return",
            "comment": comment,
        }
        result: dict[str, Any] = self.request(
            "POST", f"/api/projects/{project}/tasks/{task_id}/review", json=body
        )
        return result

    def agreement(self, project: str, task_id: int) -> list[dict[str, Any]]:
        """Dice, HD95 and volume differences per label and pair of annotators of a task."""
        result: list[dict[str, Any]] = self.request(
            "GET", f"/api/projects/{project}/tasks/{task_id}/agreement"
        )
        return result

    def consensus(self, project: str, task_id: int, method: str = "staple") -> dict[str, Any]:
        """Build a consensus (``staple`` or ``majority``) of a task's annotators' versions."""
        result: dict[str, Any] = self.request(
            "POST", f"/api/projects/{project}/tasks/{task_id}/consensus", json={"method": method}
        )
        return result

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """Audit rows (administrators); filters: since, user, action, project, outcome, limit."""
        params = {k: v for k, v in filters.items() if v is not None}
        result: list[dict[str, Any]] = self.request("GET", "/api/audit", params=params)
        return result


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            detail = str(response.json().get("detail", response.text))
        except ValueError:
            detail = response.text
        raise CarinaAPIError(response.status_code, detail)
    if not response.content:
        return None
    return response.json()

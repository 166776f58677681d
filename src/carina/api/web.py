"""The web viewer: the built bundle (``web/dist``) served at ``/``.

It is ASGI middleware, not routes: the API and DICOMweb paths (``/api/``, ``/dicom-web``,
``/projects/``) always reach the application, and any other ``GET``/``HEAD`` is a file of the
bundle, or the bundle's ``index.html`` (the viewer routes in the browser). The bundle holds no
data, so it is public; what it shows comes from the API, which checks every request.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/dicom-web/", "/projects/")
MISSING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Carina</title></head>
<body><h1>Carina</h1>
<p>The web viewer is not built: no <code>{index}</code>.</p>
<p>Build it with <code>make run</code>
(or <code>cd web &amp;&amp; npm ci &amp;&amp; npx vite build</code>).
The API is served under <a href="/api/docs">/api/docs</a>.</p>
</body></html>
"""


def is_api_path(path: str) -> bool:
    """Whether a path belongs to the API (never answered by the viewer)."""
    return path.rstrip("/") in ("/api", "/dicom-web") or path.startswith(API_PREFIXES)


class WebAppMiddleware:
    """Serves the viewer bundle in ``web_dir`` for every non-API ``GET``/``HEAD``."""

    def __init__(self, app: ASGIApp, *, web_dir: Path) -> None:
        self.app = app
        self.web_dir = web_dir.resolve()
        self.index = self.web_dir / "index.html"
        if not self.index.is_file():
            log.warning(
                "the web viewer is not built (no %s): `make run` builds it; the API works anyway",
                self.index,
            )

    def _file(self, path: str) -> Path | None:
        """The bundle file a URL path names, never one outside the bundle."""
        relative = path.lstrip("/")
        if not relative:
            return None
        candidate = (self.web_dir / relative).resolve()
        if not candidate.is_relative_to(self.web_dir) or not candidate.is_file():
            return None
        return candidate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or is_api_path(path):
            await self.app(scope, receive, send)
            return
        status = 200
        found = self._file(path)
        if found is not None:
            body = found.read_bytes()
            media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
            # hashed asset names change with their content; index.html must be revalidated
            immutable = found.parent.name == "assets"
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
        elif self.index.is_file():
            body = self.index.read_bytes()
            media_type, cache = "text/html", "no-cache"
        else:
            body = MISSING_PAGE.format(index=self.index).encode()
            media_type, cache, status = "text/html", "no-store", 503
        if media_type.startswith("text/") or media_type in ("application/javascript",):
            media_type += "; charset=utf-8"
        headers = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", cache.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

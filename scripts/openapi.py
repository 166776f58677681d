"""Write Carina's OpenAPI document (JSON) to a file, or to standard output.

The web viewer's TypeScript types are generated from it (``web/src/api/schema.d.ts``)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from carina.api import create_app
from carina.services.settings import Settings


def openapi_document() -> str:
    """The OpenAPI document of the application, as stable (sorted, indented) JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        # the document does not depend on the data: a throw-away data dir, no services started
        app = create_app(Settings(data_dir=Path(tmp), dicom_port=None, jobs_workers=0))
        return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = openapi_document()
    if len(argv) > 1:
        Path(argv[1]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

"""De-identification in the web viewer: the rules a browser applies, and patient pseudonyms.

The browser de-identifies before anything leaves it; it gets the project's resolved profile, a
salt derived from the project secret, and, for each patient, a pseudonym for the key it derived
from the PatientID (:mod:`carina.deid.browser`). Pseudonyms given out are recorded in the
database so the project's owners can see which keys were pseudonymised.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from carina.core.errors import NotFoundError
from carina.db import BrowserPseudonym, Project
from carina.deid import options_for
from carina.deid.browser import KeyPseudonym, browser_salt, key_pseudonym, resolved_rules
from carina.services.project_deid import ensure_secret, load_policy


def browser_rules(data_dir: Path, project: str) -> dict[str, Any]:
    """The project's profile resolved for a browser, with the salt of its derivations."""
    policy = load_policy(data_dir, project)
    options = options_for(policy.profile, policy.options)
    salt = browser_salt(ensure_secret(data_dir, project))
    return {
        "profile": policy.profile,
        "version": policy.edition.split()[2] if len(policy.edition.split()) > 2 else "",
        "edition": policy.edition,
        "enabled": policy.enabled,
        "derivation": policy.derivation,
        "options": list(options.active()),
        **resolved_rules(options),
        "salt": salt,
    }


def browser_pseudonym(engine: Engine, data_dir: Path, project: str, key: str) -> KeyPseudonym:
    """The pseudonym of a patient key in ``project``: derived once, then read from the database."""
    derived = key_pseudonym(ensure_secret(data_dir, project), key)
    with Session(engine) as session:
        project_id = session.scalar(select(Project.id).where(Project.name == project))
        if project_id is None:
            raise NotFoundError(f"no project {project!r}")
        query = select(BrowserPseudonym).where(
            BrowserPseudonym.project_id == project_id, BrowserPseudonym.patient_key == key
        )
        row = session.scalars(query).first()
        if row is None:
            session.add(
                BrowserPseudonym(
                    project_id=project_id,
                    patient_key=key,
                    pseudonym=derived.patient_id,
                    date_shift_days=derived.date_shift_days,
                    created_at=datetime.now(UTC),
                )
            )
            try:
                session.commit()
            except IntegrityError:  # recorded by a concurrent request meanwhile
                session.rollback()
            row = session.scalars(query).one()
        return KeyPseudonym(row.pseudonym, row.date_shift_days)

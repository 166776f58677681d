"""Passwords, the server secret, login throttling, token expiry and revocation, the audit table."""

from __future__ import annotations

import stat
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from carina.api import create_app
from carina.auth import Action, LoginLimiter, Principal, Resource, Role, can
from carina.auth.passwords import hash_password, verify_password
from carina.auth.secret_key import SECRET_FILE, check_secret, load_or_create_secret
from carina.core.errors import ConfigurationError, ConflictError, PermissionDeniedError
from carina.services.auth import auth_services, open_directory
from carina.services.settings import Settings


def test_passwords_are_argon2id_and_verified() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterx")
    assert not verify_password(None, "anything")
    assert not verify_password("not-a-hash", "anything")


@pytest.mark.parametrize(
    "value",
    ["changethis", "secret", "password", "CHANGE-ME", "changethis" * 4, "a" * 64, "x" * 31 + "y"],
)
def test_placeholder_and_short_secrets_are_refused(value: str) -> None:
    with pytest.raises(ConfigurationError):
        check_secret(value)


def test_app_refuses_to_start_with_a_weak_secret(tmp_path: Path) -> None:
    for weak in ("changethis", "short-but-random-9f3k", "password" * 5):
        with pytest.raises(ConfigurationError):
            create_app(Settings(data_dir=tmp_path, dicom_port=None, secret_key=weak))  # type: ignore[arg-type]
    assert not (tmp_path / SECRET_FILE).exists()
    good = "Jq8v2LrX0pWz7cT4nB6mK1sD9fH3gY5a"
    assert (
        create_app(Settings(data_dir=tmp_path, dicom_port=None, secret_key=good)).state.secret
        == good
    )  # type: ignore[arg-type]


def test_generated_secret_is_random_private_and_kept(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "a")
    path = tmp_path / "a" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 48
    assert load_or_create_secret(tmp_path / "a") == first
    assert load_or_create_secret(tmp_path / "b") != first
    app = create_app(Settings(data_dir=tmp_path / "c", dicom_port=None))
    assert stat.S_IMODE((tmp_path / "c" / SECRET_FILE).stat().st_mode) == 0o600
    assert app.state.secret == (tmp_path / "c" / SECRET_FILE).read_text().strip()


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_secret(tmp_path)
    (tmp_path / SECRET_FILE).chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_or_create_secret(tmp_path)


def test_can_is_deny_by_default() -> None:
    viewer = Principal(1, "v", roles={"alpha": Role.VIEWER})
    admin = Principal(2, "a", is_admin=True)
    assert not can(None, Action.READ_STUDY, Resource("alpha"))
    assert can(viewer, Action.READ_STUDY, Resource("alpha"))
    assert not can(viewer, Action.READ_STUDY, Resource("beta"))
    assert not can(viewer, Action.READ_STUDY)  # the whole archive: administrators only
    assert not can(viewer, Action.STORE_STUDY, Resource("alpha"))
    assert not can(viewer, Action.READ_AUDIT)
    assert can(viewer, Action.CREATE_PROJECT)
    assert can(admin, Action.READ_AUDIT)
    assert can(admin, Action.READ_STUDY)


def test_login_limiter_counts_per_user_and_address() -> None:
    now = [0.0]
    limiter = LoginLimiter(3, 60, clock=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("alice", "10.0.0.1")
        limiter.failed("alice", "10.0.0.1")
    assert limiter.blocked("alice", "10.0.0.1")
    assert limiter.blocked("ALICE", "10.0.0.1")
    assert not limiter.blocked("alice", "10.0.0.2")
    assert not limiter.blocked("bob", "10.0.0.1")
    now[0] = 61
    assert not limiter.blocked("alice", "10.0.0.1")


def test_login_limiter_forgets_expired_keys() -> None:
    now = [0.0]
    limiter = LoginLimiter(3, 60, clock=lambda: now[0], max_keys=10)
    for number in range(10):
        limiter.failed(f"user{number}", "10.0.0.1")
    assert len(limiter) == 10
    now[0] = 61
    limiter.failed("another", "10.0.0.1")
    assert len(limiter) == 1


def test_tokens_expire_and_are_revoked(tmp_path: Path) -> None:
    with open_directory(Settings(data_dir=tmp_path)) as directory:
        store, _ = auth_services(directory.engine, "Jq8v2LrX0pWz7cT4nB6mK1sD9fH3gY5a")
        user = store.create_user("alice", "long enough password")
        live = store.issue_token(user.id, "personal", timedelta(hours=1), "ci")
        expired = store.issue_token(user.id, "access", timedelta(seconds=-1))
        assert store.principal_for_token(live.token, ["personal"]) is not None
        assert store.principal_for_token(live.token, ["session"]) is None
        assert store.principal_for_token(expired.token, ["access"]) is None
        store.revoke_token(user.id, live.id)
        assert store.principal_for_token(live.token, ["personal"]) is None
        (listed,) = store.tokens(user.id)
        assert listed.revoked
        assert listed.name == "ci"
        with directory.engine.connect() as connection:
            digests = connection.execute(text("SELECT digest FROM auth_tokens")).scalars().all()
        assert live.token not in digests
        assert len(digests) == 2


def test_owner_role_changes_and_last_owner(tmp_path: Path) -> None:
    with open_directory(Settings(data_dir=tmp_path)) as directory:
        store = directory.store
        owner = store.create_user("owner", "long enough password")
        store.create_user("mgr", "long enough password")
        store.create_user("bob", "long enough password")
        owner_p = Principal(owner.id, "owner", roles={"p": Role.OWNER})
        store.create_project(owner_p, "p")
        store.set_member(owner_p, "p", "mgr", Role.MANAGER)
        manager = store.authenticate("mgr", "long enough password")
        assert manager is not None
        assert manager.roles == {"p": Role.MANAGER}
        store.set_member(manager, "p", "bob", Role.ANNOTATOR)
        with pytest.raises(PermissionDeniedError):
            store.set_member(manager, "p", "bob", Role.OWNER)
        with pytest.raises(PermissionDeniedError):
            store.remove_member(manager, "p", "owner")
        with pytest.raises(ConflictError):
            store.set_member(owner_p, "p", "owner", Role.VIEWER)
        with pytest.raises(ConflictError):
            store.remove_member(owner_p, "p", "owner")
        assert {m.user: m.role for m in store.members("p")} == {
            "owner": Role.OWNER,
            "mgr": Role.MANAGER,
            "bob": Role.ANNOTATOR,
        }


def test_audit_table_is_append_only(tmp_path: Path) -> None:
    with open_directory(Settings(data_dir=tmp_path)) as directory:
        directory.audit.record(action="study.read", outcome="allowed", user_name="alice")
        with directory.engine.connect() as connection:
            with pytest.raises(DatabaseError, match="append-only"):
                connection.execute(text("UPDATE audit_events SET outcome = 'denied'"))
            connection.rollback()
            with pytest.raises(DatabaseError, match="append-only"):
                connection.execute(text("DELETE FROM audit_events"))
            connection.rollback()
        (event,) = directory.audit.events()
        assert (event.user_name, event.action, event.outcome) == ("alice", "study.read", "allowed")


def test_audit_since_compares_instants_across_time_zones(tmp_path: Path) -> None:
    with open_directory(Settings(data_dir=tmp_path)) as directory:
        directory.audit.record(action="study.read", outcome="allowed", user_name="alice")
        (event,) = directory.audit.events()
        east = timezone(timedelta(hours=5))
        just_before = (event.at - timedelta(seconds=1)).astimezone(east)
        just_after = (event.at + timedelta(seconds=1)).astimezone(east)
        assert len(directory.audit.events(since=just_before)) == 1
        assert directory.audit.events(since=just_after) == []
        naive_utc = (event.at - timedelta(seconds=1)).replace(tzinfo=None)
        assert len(directory.audit.events(since=naive_utc)) == 1

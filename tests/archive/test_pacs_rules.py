"""PACS sync rules without a peer: the searches a rule makes, what a rule must have, when the
scheduler submits its job, the ``carina pacs rules`` commands, and DICOMweb peer settings."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carina.archive import Archive
from carina.archive.pacs import PacsError, Peer, WebPeer, parse_peer
from carina.cli.main import app
from carina.core.errors import ConfigurationError, ConflictError, NotFoundError
from carina.jobs import JobStatus, JobStore
from carina.services.auth import auth_services
from carina.services.pacs_sync import KIND, SyncRules, SyncScheduler
from carina.services.settings import Settings


@pytest.fixture
def rules(tmp_path: Path) -> SyncRules:
    with Archive(tmp_path / "data") as archive:
        auth, _ = auth_services(archive.engine, None)
        auth.create_user("owner", "a-long-test-password")
        auth.create_project(auth.principal("owner"), "cohort")
        auth.create_project(auth.principal("owner"), "other")
        return SyncRules(archive.engine)


def test_rule_searches(rules: SyncRules) -> None:
    rule = rules.create("cohort", peer="PACS", modality="ct", study_age_days=7)
    assert rule.queries(today=date(2026, 11, 23)) == [
        {"ModalitiesInStudy": "CT", "StudyDate": "20261116-"}
    ]
    rule = rules.create("cohort", peer="PACS", patient_ids=["A", "B"], project_patients=True)
    # the project's patients after the listed ones, each once; a PatientID that would match
    # other patients (empty, wildcards, several values) is never searched for
    found = rule.queries(["B", "", "C", "D*", "E?", "F\\G"])
    assert found == [{"PatientID": p} for p in ("A", "B", "C")]
    follow_ups = rules.create("cohort", peer="PACS", project_patients=True)
    assert follow_ups.queries([]) == []  # no patients in the project: nothing to search


def test_rule_validation(rules: SyncRules) -> None:
    with pytest.raises(ConfigurationError, match="needs a filter"):
        rules.create("cohort", peer="PACS")
    with pytest.raises(ConfigurationError, match="method"):
        rules.create("cohort", peer="PACS", modality="CT", method="send")
    with pytest.raises(ConfigurationError, match="wildcards"):
        rules.create("cohort", peer="PACS", patient_ids=["Lung*"])
    with pytest.raises(ConfigurationError, match="interval"):
        rules.create("cohort", peer="PACS", modality="CT", interval_s=5)
    with pytest.raises(NotFoundError):
        rules.create("nowhere", peer="PACS", modality="CT")
    rules.create("cohort", peer="PACS", modality="CT", name="ct")
    with pytest.raises(ConflictError):
        rules.create("cohort", peer="PACS", modality="MR", name="ct")
    other = rules.create("other", peer="PACS", modality="CT", name="ct")
    with pytest.raises(NotFoundError):
        rules.get(other.id, "cohort")
    assert [r.name for r in rules.all("cohort")] == ["ct"]


def test_scheduler_submits_due_rules_once(rules: SyncRules) -> None:
    jobs = JobStore(rules.engine)
    hourly = rules.create("cohort", peer="PACS", modality="CT", interval_s=3600)
    rules.create("cohort", peer="PACS", modality="MR")  # on request only
    rules.create("other", peer="PACS", modality="CT", interval_s=60, enabled=False)
    scheduler = SyncScheduler(rules, jobs, jobs.submit, check_s=60)
    start = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    (first,) = scheduler.tick(start)
    assert (first.kind, first.params, first.project_id) == (KIND, {"rule": hourly.id}, 1)
    assert rules.get(hourly.id).last_job_id == first.id
    # not again while its job is unfinished, even when the interval has passed
    assert scheduler.tick(start + timedelta(hours=2)) == []
    claimed = jobs.claim(first.id, "test")
    assert claimed == 1
    jobs.succeed(first.id, 1, {"found": 0})
    assert jobs.get(first.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    # finished, but within the hour of its last submission (now)
    submitted_at = rules.get(hourly.id).last_submitted_at
    assert submitted_at is not None
    assert scheduler.tick(submitted_at + timedelta(minutes=59)) == []
    (second,) = scheduler.tick(submitted_at + timedelta(hours=1))
    assert second.id != first.id


def test_rules_commands(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    with Archive(tmp_path / "data") as archive:
        auth, _ = auth_services(archive.engine, None)
        auth.create_user("owner", "a-long-test-password")
        auth.create_project(auth.principal("owner"), "cohort")
    runner = CliRunner()
    added = runner.invoke(
        app,
        [
            *("pacs", "rules", "add", "cohort", "PACS@10.0.0.5:104", "--modality", "CT"),
            *("--patient-id", "A1", "--patient-id", "A2", "--last-days", "7", *data),
        ],
    )
    assert added.exit_code == 0, added.output
    rule_id = int(added.output.strip())
    listed = runner.invoke(app, ["pacs", "rules", "list", "cohort", "--json", *data])
    (rule,) = json.loads(listed.output)
    assert rule["id"] == rule_id
    assert (rule["peer"], rule["modality"], rule["study_age_days"]) == (
        "PACS@10.0.0.5:104",
        "CT",
        7,
    )
    assert (rule["patient_ids"], rule["interval_s"], rule["method"]) == (["A1", "A2"], None, "get")
    table = runner.invoke(app, ["pacs", "rules", "list", *data])
    assert table.exit_code == 0
    assert "cohort" in table.output
    refused = runner.invoke(app, ["pacs", "rules", "add", "cohort", "PACS", *data])
    assert refused.exit_code == 1
    assert "needs a filter" in refused.output
    submitted = runner.invoke(app, ["pacs", "rules", "run", str(rule_id), *data])
    assert submitted.exit_code == 0, submitted.output
    with Archive(tmp_path / "data") as archive:
        job = JobStore(archive.engine).get(int(submitted.output.strip()))
        assert job is not None
        assert (job.kind, job.params, job.status) == (KIND, {"rule": rule_id}, JobStatus.QUEUED)
    removed = runner.invoke(app, ["pacs", "rules", "remove", str(rule_id), *data])
    assert removed.exit_code == 0
    again = runner.invoke(app, ["pacs", "rules", "remove", str(rule_id), *data])
    assert again.exit_code == 1


def test_dicomweb_peers_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    peers = {
        "WEB": {"url": "https://pacs.example.org/dicom-web/", "token": "secret-token"},
        "BASIC": {"url": "http://10.0.0.9:8042/dicom-web", "username": "u", "password": "p"},
    }
    monkeypatch.setenv("CARINA_DICOMWEB_PEERS", json.dumps(peers))
    settings = Settings()
    assert settings.to_env()["CARINA_DICOMWEB_PEERS"] == json.dumps(peers)
    web = parse_peer("WEB", settings.dicom_peers, settings.dicomweb_peers)
    assert web == WebPeer("https://pacs.example.org/dicom-web", token="secret-token", name="WEB")
    assert "secret-token" not in repr(web)
    basic = parse_peer("BASIC", {}, settings.dicomweb_peers)
    assert isinstance(basic, WebPeer)
    assert (basic.username, basic.password) == ("u", "p")
    assert parse_peer("https://x.org/wado/") == WebPeer("https://x.org/wado")
    assert parse_peer("PACS@h:104") == Peer("PACS", "h", 104)
    with pytest.raises(PacsError):
        WebPeer("ftp://x.org")

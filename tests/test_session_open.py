"""Session(path): the database, the site secret, and nothing deleted that it did not create."""

from __future__ import annotations

import logging
import shutil
import stat
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from gantry_node import Session
from gantry_node.engine.deid import Keys, SecretError
from gantry_node.offline.session import SessionError
from tests.conftest import SECRET

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


@pytest.fixture(autouse=True)
def no_env_secret(monkeypatch):
    monkeypatch.delenv("GANTRY_SECRET_FILE", raising=False)


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_a_new_session_creates_its_secret_beside_it_once(tmp_path, caplog):
    db = tmp_path / "gantry.db"
    with caplog.at_level(logging.INFO, logger="gantry_node.offline"):
        Session(db).close()
    secret = tmp_path / "gantry.db.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(db.stat().st_mode) == 0o600
    created = [r for r in caplog.records if "created a new site secret" in r.getMessage()]
    assert len(created) == 1 and str(secret) in created[0].getMessage()
    assert secret.read_bytes().strip() not in caplog.text.encode()
    kept = secret.read_bytes()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gantry_node.offline"):
        Session(db).close()
    assert "created a new site secret" not in caplog.text
    assert secret.read_bytes() == kept


def test_the_database_path_is_never_read_as_the_secret(tmp_path):
    """The old Session took its first argument as the secret file: Session("gantry.db") used
    the database's bytes as the HMAC secret."""
    db = tmp_path / "gantry.db"
    Session(db).close()
    with pytest.raises(SecretError, match="is a SQLite database, not a site secret"):
        Session(tmp_path / "other.db", secret_file=db)
    assert not (tmp_path / "other.db.secret").exists()


def test_a_file_that_is_not_a_session_database_is_refused_and_left_alone(tmp_path, secret_file):
    before = secret_file.read_bytes()
    with pytest.raises(SessionError, match="not a session database"):
        Session(secret_file)  # the old call: Session(secret_file)
    assert secret_file.read_bytes() == before
    assert not Path(str(secret_file) + ".secret").exists()


def test_secret_file_and_environment_give_the_nodes_pseudonyms(tmp_path, secret_file, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CT_SMALL, src / "ct.dcm")
    expected = Keys(SECRET).uid(str(pydicom.dcmread(CT_SMALL).SOPInstanceUID))
    for db, kwargs in (("a.db", {"secret_file": secret_file}), ("b.db", {})):
        if not kwargs:
            monkeypatch.setenv("GANTRY_SECRET_FILE", str(secret_file))
        with Session(tmp_path / db, **kwargs) as s:
            s.import_folder(src)
            s.apply_remediation()
            (row,) = s.export_dataframe().to_dict("records")
            assert row["SOPInstanceUID"] == expected
        assert not (tmp_path / f"{db}.secret").exists()


def test_reopening_with_another_secret_is_refused(tmp_path, secret_file):
    Session(tmp_path / "gantry.db").close()
    with pytest.raises(SecretError, match="another site secret"):
        Session(tmp_path / "gantry.db", secret_file=secret_file)


def test_the_session_never_deletes_what_it_did_not_create(tmp_path, secret_file):
    """Files and folders around the session, an export folder with other files, a folder in
    the way of the session's own: all left as they were, through every step and close."""
    work = tmp_path / "work"
    src = work / "in"
    src.mkdir(parents=True)
    shutil.copy(CT_SMALL, src / "ct.dcm")
    (work / "notes.txt").write_text("mine")
    out = work / "clean"
    out.mkdir()
    (out / "README").write_text("the export folder's own file")
    before = snapshot(work)

    with Session(work / "gantry.db", secret_file=secret_file) as s:
        s.import_folder(work)
        s.apply_remediation()
        s.execute_config()
        s.audit()
        first = s.export(out)
        assert len(first.written) == 1
        (target,) = first.written
        target.write_bytes(b"changed by the user")
        again = s.export(out)  # a different file where the instance would go: not overwritten
        assert again.written == [] and "exists with other content; not overwritten" in again.summary()
        assert target.read_bytes() == b"changed by the user"
        s.save()
    after = snapshot(work)
    assert {k: v for k, v in after.items() if k in before} == before
    created = set(after) - set(before)
    assert all(k.startswith(("gantry.db", "clean/")) for k in created), created

    blocked = tmp_path / "blocked"
    (blocked / "gantry.db.d").mkdir(parents=True)
    (blocked / "gantry.db.d" / "keep.txt").write_text("not the session's")
    with Session(blocked / "gantry.db", secret_file=secret_file) as s:
        s.import_folder(src)
        with pytest.raises(SessionError, match="was not created by this session"):
            s.apply_remediation()
    assert (blocked / "gantry.db.d" / "keep.txt").read_text() == "not the session's"


def test_the_session_is_found_again_from_another_working_directory(tmp_path, secret_file, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CT_SMALL, src / "ct.dcm")
    monkeypatch.chdir(tmp_path)
    with Session("gantry.db", secret_file=secret_file) as s:
        s.import_folder("in")
        s.apply_remediation()
    monkeypatch.chdir(src)
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as s:
        s.apply_remediation()  # its own folder, opened by another path
        assert len(s.export(tmp_path / "out").written) == 1

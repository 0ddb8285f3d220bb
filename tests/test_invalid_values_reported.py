"""Values pydicom finds invalid are reported by the offline front doors (the `deid` and
`audit` commands, `Session`) as problems by file and tag, and their values are shown nowhere:
not on stdout or stderr, not in a warning, not in a log record, not in a report."""

from __future__ import annotations

import logging
import warnings

from gantry_node import Session
from tests.support.invalid_values import PROBLEM_TAGS, assert_no_surname, write_invalid_instance


def test_deid_lists_the_tags_and_never_the_values(tmp_path, run_cli, secret_file):
    path = write_invalid_instance(tmp_path / "in")
    proc = run_cli("deid", tmp_path / "in", tmp_path / "out", "--secret-file", secret_file, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "1 files: 1 de-identified and written" in proc.stdout
    assert "4 problems with values in 1 files, listed by file and tag (values withheld)" in proc.stdout
    for problem in PROBLEM_TAGS:
        assert f"{path}: {problem} (value withheld)" in proc.stderr.splitlines(), proc.stderr
    assert "Warning" not in proc.stderr
    assert_no_surname([proc.stdout, proc.stderr], "the deid command's output")


def test_audit_lists_the_tags_and_never_the_values(tmp_path, run_cli, secret_file):
    path = write_invalid_instance(tmp_path / "in")
    for extra in ((), ("--reveal",)):
        proc = run_cli("audit", tmp_path / "in", "--secret-file", secret_file, *extra)
        assert proc.returncode == 0, proc.stderr
        for problem in PROBLEM_TAGS:
            assert f"{path}: {problem} (value withheld)" in proc.stderr.splitlines(), proc.stderr
        assert "Warning" not in proc.stderr
        # --reveal shows the values of what the policy changes; the replaced UIDs are not
        # findings' values to reveal, and the problems never carry one
        if not extra:
            assert_no_surname([proc.stdout, proc.stderr], "the audit command's output")
        else:
            assert_no_surname([proc.stderr], "the audit command's stderr")


def test_session_keeps_the_problems_by_tag(tmp_path, capfd, caplog, secret_file):
    path = write_invalid_instance(tmp_path / "in")
    caplog.set_level(logging.DEBUG)  # an application that logs everything pydicom logs
    with warnings.catch_warnings(record=True) as shown, \
            Session(tmp_path / "s.db", secret_file=secret_file) as s:
        warnings.simplefilter("always")
        s.import_folder(tmp_path / "in")
        findings = s.scan_for_phi()
        s.apply_remediation(findings)
        s.audit()
        s.export_dataframe()
        report = s.generate_report(tmp_path / "report.md").read_text()
        problems = s.problems
    assert [str(p).removesuffix(" (value withheld)") for p in problems[str(path)]] == sorted(PROBLEM_TAGS)
    assert all(p.tag and p.keyword for p in problems[str(path)])
    for problem in PROBLEM_TAGS:
        assert f"- {problem} (value withheld): 1 file" in report
    out, err = capfd.readouterr()
    assert_no_surname([out, err, caplog.text, report, *(str(w.message) for w in shown), repr(problems)],
                      "the session's output")

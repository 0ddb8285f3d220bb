"""Subset export (a query, a DataFrame, a list of UIDs), the cohort table and Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pydicom
import pytest

from gantry_node import Session
from tests.support.cohort import fill_in_config, make_cohort


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    secret = root / "secret"
    from tests.conftest import SECRET

    secret.write_bytes(SECRET)
    roles = make_cohort(root / "raw")
    s = Session(root / "gantry.db", secret_file=secret)
    s.import_folder(root / "raw", progress=False)
    s.apply_remediation(progress=False)
    s.scaffold_config(root / "config.yaml")
    fill_in_config(root / "config.yaml")
    s.load_config(root / "config.yaml")
    s.execute_config(progress=False)
    s.roles = roles
    yield s
    s.close()


def exported_originals(session, folder: Path) -> set[str]:
    """The original SOP Instance UIDs of what was written (mapped back through the catalogue)."""
    clean = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in folder.rglob("*.dcm")}
    return {r["sop_uid"] for r in session.catalogue.instances() if r["clean_sop_uid"] in clean}


def test_the_cohort_table(session):
    df = session.export_dataframe(expand_metadata=True)
    assert len(df) == 9 and df.instance_id.is_unique
    assert {"InstanceCount", "Modality", "SliceThickness", "SeriesInstanceUID", "ImagePositionPatient",
            "KVP", "Manufacturer", "FileSize", "Rows"} <= set(df.columns)
    assert df.groupby("Modality")["InstanceCount"].max().to_dict() == {"CT": 3, "MR": 2, "US": 1}
    assert df.SOPInstanceUID.str.startswith("2.25.").all()
    assert set(df.SliceThickness.dropna()) == {2.5, 5.0}
    compact = session.export_dataframe(expand_metadata=False)
    assert "metadata" in compact.columns and "SliceThickness" not in compact.columns


def test_query_subset_exports_exactly_the_thick_cts(session, tmp_path):
    df = session.export_dataframe(expand_metadata=True)
    subset = df[(df.Modality == "CT") & (df.SliceThickness.astype(float) > 2.5)]
    report = session.export(tmp_path / "thick", subset=subset)
    assert len(report.written) == 2 and report.held_back == {}
    assert exported_originals(session, tmp_path / "thick") == set(session.roles["thick_ct"])
    session.export(tmp_path / "query", subset="Modality == 'CT' and SliceThickness > 2.5")
    assert exported_originals(session, tmp_path / "query") == set(session.roles["thick_ct"])


def test_uid_list_subsets(session, tmp_path):
    rows = {r["sop_uid"]: r for r in session.catalogue.instances("status = 'ok'")}
    mr_series_original = rows[session.roles["mr"][0]]["series_uid"]
    thin_study_pseudonym = rows[session.roles["thin_ct"][0]]["clean_study_uid"]
    one_instance = session.roles["thick_ct"][0]
    session.export(tmp_path / "mr", subset=[mr_series_original])
    assert exported_originals(session, tmp_path / "mr") == set(session.roles["mr"])
    report = session.export(tmp_path / "study", subset=[thin_study_pseudonym])
    # the whole of Jane's study; its ultrasound is redacted and released
    assert exported_originals(session, tmp_path / "study") == set(
        session.roles["thin_ct"] + session.roles["thick_ct"] + session.roles["us_rule"])
    assert report.held_back == {}
    session.export(tmp_path / "one", subset=[one_instance])
    assert exported_originals(session, tmp_path / "one") == {one_instance}
    held = session.export(tmp_path / "held", subset=session.roles["us_no_rule"])
    assert held.written == [] and "no machine rule matches" in next(iter(held.held_back.values()))


def test_parquet_in_row_groups_equals_the_table(session, tmp_path):
    path = session.export_to_parquet(tmp_path / "cohort.parquet", row_group=4)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    table = pd.read_parquet(path)
    df = session.export_dataframe()
    assert table.SOPInstanceUID.tolist() == df.SOPInstanceUID.tolist()
    assert table.InstanceCount.tolist() == df.InstanceCount.tolist()
    assert table.SliceThickness.fillna(-1).tolist() == df.SliceThickness.fillna(-1).tolist()

"""Many CT files quickly, for benchmarks."""

from __future__ import annotations

from pathlib import Path

from gantry_node.testing.study import Study


def make_ct_corpus(n: int, out_dir: str | Path, patients: int = 1, slices_per_series: int = 100,
                   rows: int = 512, columns: int = 512, phi: bool = True,
                   bits: int = 16) -> list[Path]:
    """Write `n` CT files (rows x columns, `bits` 16 or 12 stored) under `out_dir`, spread over `patients`
    patients (one study each, series of `slices_per_series`); returns the paths in order.
    With `phi`, every instance carries the planted PHI of `InstanceBuilder.with_all_phi`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    patients = max(1, min(patients, n))
    studies = [
        Study.for_patient(name=f"PATIENT^SYNTHETIC^{p:04d}", patient_id=f"MRN{p:07d}", birth_date="19600101", sex="O")
        .on("20240311").accession(f"ACC{p:07d}").described("CT CHEST")
        for p in range(patients)
    ]
    series = [study.series("CT") for study in studies]
    paths = []
    for i in range(n):
        p = i % patients
        if series[p]._instance_count >= slices_per_series:
            series[p] = studies[p].series("CT")
        builder = series[p].ct_image(rows=rows, columns=columns, bits=bits)
        if phi:
            builder.with_all_phi()
        path = out_dir / f"ct_{i:06d}.dcm"
        builder.build().save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths

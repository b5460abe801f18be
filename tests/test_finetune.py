"""Fine-tuning pipeline: labels, split, dataset files, training + resume, evaluation, Maker, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from tdph_workflows.finetune.dataset import (
    DatasetSettings,
    build_dataset,
    harmonic_labels,
    random_displacements,
    split_compounds,
)
from tdph_workflows.finetune.evaluation import compound_family

SMALL = ["materials-id-546633-kclo4-f-43m-216.tar.lzma", "materials-id-546711-csclo4-f-43m-216.tar.lzma",
         "materials-id-550759-rbclo4-f-43m-216.tar.lzma"]  # 24-atom supercells


@pytest.fixture(scope="module")
def small_sources(mdr_dir):
    from conftest import require

    return [str(require(mdr_dir / "raw_lt20atoms" / name, "MDR tarball")) for name in SMALL]


def test_labels_are_minus_phi_u_and_their_energy_gradient():
    rng = np.random.default_rng(0)
    n = 4
    a = rng.standard_normal((3 * n, 3 * n))
    phi = a @ a.T
    fc = phi.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)
    u = random_displacements(rng, 5, n, 0.01, 0.05)
    norms = np.linalg.norm(u, axis=-1)
    assert norms.min() >= 0.01 - 1e-12 and norms.max() <= 0.05 + 1e-12
    forces, energy = harmonic_labels(fc, u)
    assert np.allclose(forces.reshape(5, -1), -u.reshape(5, -1) @ phi)
    h = 1e-6  # E(u) = u Phi u / 2 must have gradient -F
    du = np.zeros_like(u[:1])
    du[0, 2, 1] = h
    e_plus = harmonic_labels(fc, u[:1] + du)[1][0]
    e_minus = harmonic_labels(fc, u[:1] - du)[1][0]
    assert (e_plus - e_minus) / (2 * h) == pytest.approx(-forces[0, 2, 1], rel=1e-6)
    assert np.all(energy > 0)


def test_split_is_by_compound_seeded_and_keeps_holdouts_out_of_training():
    ids = [f"mp-{k}" for k in range(100)]
    split = split_compounds(ids, 0.05, seed=3, holdout=["mp-7", "mp-8"])
    assert split["mp-7"] == split["mp-8"] == "val"
    assert sum(v == "val" for v in split.values()) == 5
    assert split == split_compounds(ids, 0.05, seed=3, holdout=["mp-7", "mp-8"])
    assert split != split_compounds(ids, 0.05, seed=4, holdout=["mp-7", "mp-8"])
    assert sum(v == "val" for v in split_compounds(ids[:10], 0.05, seed=0).values()) == 1


def test_families():
    assert compound_family(["Na", "Cl"], 225) == "alkali_halide"
    assert compound_family(["Sr", "Ti", "O", "O", "O"], 221) == "perovskite"
    assert compound_family(["Cs", "Cs", "Na", "In", *["Cl"] * 6], 225) == "double_perovskite"
    assert compound_family(["Sr", "Ti", "O", "O", "O"], 62) == "other"


def test_dataset_files_labels_cache_and_bad_entries(small_sources, model_dir, tmp_path):
    bad = tmp_path / "materials-id-999-broken.tar.lzma"
    bad.write_bytes(b"not an archive")
    settings = DatasetSettings(n_configs=3, val_fraction=0.3, seed=1)
    m = build_dataset([*small_sources, str(bad)], tmp_path / "ds", settings, workers=1)
    assert m["counts"]["train"]["compounds"] == 2 and m["counts"]["val"]["compounds"] == 1
    assert m["counts"]["train"]["structures"] == 6
    assert [s["source"] for s in m["skipped"]] == [str(bad)] and "mp-999" in m["skipped"][0]["reason"]
    frames = read(tmp_path / "ds" / "train.extxyz", index=":")
    from tdph_workflows.io.mdr import load_mdr_entry

    rec = next(c for c in m["compounds"] if c["material_id"] == frames[0].info["material_id"])
    entry = load_mdr_entry(rec["source"])
    u = frames[0].positions - entry.phonon.supercell.positions
    forces, energy = harmonic_labels(entry.dft_force_constants(), u[None])
    assert np.allclose(frames[0].get_forces(), forces[0], atol=1e-6)
    assert frames[0].get_potential_energy() == pytest.approx(rec["e_ref"] + energy[0], abs=1e-6)
    assert 0.01 - 1e-6 <= np.linalg.norm(u, axis=1).min() and np.linalg.norm(u, axis=1).max() <= 0.05 + 1e-6
    stamp = (tmp_path / "ds" / "train.extxyz").stat().st_mtime_ns
    assert build_dataset([*small_sources, str(bad)], tmp_path / "ds", settings, workers=1) == m  # cached
    assert (tmp_path / "ds" / "train.extxyz").stat().st_mtime_ns == stamp
    strict = build_dataset(small_sources, tmp_path / "ds2", DatasetSettings(n_configs=1, max_imaginary_thz=1.8),
                           workers=1)
    reasons = " ".join(s["reason"] for s in strict["skipped"])
    assert "mp-546633" in reasons and "broken entry" in reasons  # KClO4 has a -2.6 THz DFT mode


@pytest.fixture(scope="module")
def tiny_dataset(small_sources, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune") / "dataset"
    build_dataset(small_sources, out, DatasetSettings(n_configs=4, val_fraction=0.3, seed=0), workers=1)
    return out


def _force_mae(model: str, extxyz: Path) -> float:
    from tdph_workflows.potentials import resolve_calculator

    calc = resolve_calculator(model)
    errors = []
    for atoms in read(extxyz, index=":"):
        ref = atoms.get_forces()
        atoms.calc = calc
        errors.append(np.abs(atoms.get_forces() - ref).mean())
    return float(np.mean(errors))


def test_training_lowers_the_force_error_and_writes_a_loadable_model(tiny_dataset, model_dir, tmp_path):
    import matgl

    from tdph_workflows.finetune.training import TrainSettings, train

    report = train(tiny_dataset, tmp_path / "run", str(model_dir),
                   TrainSettings(epochs=3, batch_size=2, accelerator="cpu"))
    assert report["epochs_completed"] == 3 and len(report["epoch_seconds"]) == 3
    assert len(report["val_history"]) == 3
    model = tmp_path / "run" / "model"
    pot = matgl.load_model(str(model))
    assert pot.calc_stresses and pot.element_refs is not None
    before = _force_mae(str(model_dir), tiny_dataset / "train.extxyz")
    after = _force_mae(str(model), tiny_dataset / "train.extxyz")
    assert after < 0.8 * before, (before, after)
    assert report["model_hash"] and report["model_hash"] != report["base_model_hash"]


def test_training_resumes_after_a_kill(tiny_dataset, model_dir, tmp_path):
    out = tmp_path / "killed"
    code = (f"from tdph_workflows.finetune.training import TrainSettings, train; "
            f"train({str(tiny_dataset)!r}, {str(out)!r}, {str(model_dir)!r}, "
            f"TrainSettings(epochs=4, batch_size=2, checkpoint_every_steps=1, accelerator='cpu'))")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "TDPH_TORCH_THREADS": "1"})
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "no checkpoint before the kill"
    assert not (out / "model").exists()
    from tdph_workflows.finetune.training import TrainSettings, train

    report = train(tiny_dataset, out, str(model_dir),
                   TrainSettings(epochs=4, batch_size=2, checkpoint_every_steps=1, accelerator="cpu"))
    assert report["epochs_completed"] == 4
    assert report["resumed_from"]["global_step"] >= 1  # continued from the checkpoint, not from scratch
    assert (out / "model" / "model.json").exists()


def test_evaluation_scores_models_and_records_failures(mdr_dir, model_dir, tmp_path):
    from conftest import require

    from tdph_workflows.finetune.evaluation import evaluate

    nacl = require(mdr_dir / "curated" / "mp-22862_NaCl", "curated NaCl")
    broken = tmp_path / "materials-id-1-broken.tar.lzma"
    broken.write_bytes(b"junk")
    summary = evaluate([str(nacl), str(broken)], {"pretrained": str(model_dir)}, tmp_path / "eval")
    s = summary["by_model"]["pretrained"]
    assert s["compounds"] == 1 and s["failed"][0]["material_id"] == broken.name
    assert s["mae_thz_all_modes"] == pytest.approx(0.37, abs=0.05)  # tests/test_m3gnet.py's zero-shot figure
    assert s["stability_agreement"] == 1.0 and s["by_family"]["alkali_halide"]["compounds"] == 1
    assert (tmp_path / "eval" / "parity.png").stat().st_size > 10_000
    import csv

    with open(tmp_path / "eval" / "scores.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["family"] for r in rows] == ["alkali_halide", "other"] and rows[1]["error"]


def test_finetune_maker_flow_categories(small_sources, tmp_path):
    from jobflow.managers.fireworks import flow_to_workflow

    from tdph_workflows.makers import FineTuneMaker

    with pytest.raises(ValueError, match="u_min"):
        FineTuneMaker(labels="fixed", dataset_settings={"u_min": 0.1, "u_max": 0.05})
    with pytest.raises(ValueError, match="u_min"):
        FineTuneMaker(train_settings={"u_min": 0.1, "u_max": 0.05})
    with pytest.raises(ValueError, match="labels"):
        FineTuneMaker(labels="cached")
    for labels, train_fn in (("on-the-fly", "train_on_the_fly_job"), ("fixed", "train_job")):
        flow = FineTuneMaker(work_dir=str(tmp_path), labels=labels, train_settings={"epochs": 2}).make(small_sources)
        assert [j.name for j in flow.jobs] == ["tdph fine-tune dataset", "tdph fine-tune train",
                                               "tdph fine-tune evaluate"]
        assert flow.jobs[1].function.__name__ == train_fn
        wf = flow_to_workflow(flow)
        assert sorted(fw.spec["_category"] for fw in wf.fws) == ["cpu", "cpu", "gpu"]
        train_fw = next(fw for fw in wf.fws if fw.name == "tdph fine-tune train")
        assert train_fw.spec["_category"] == "gpu"


@pytest.mark.parametrize("labels", ["fixed", "on-the-fly"])
def test_finetune_cli_build_train_evaluate(labels, small_sources, model_dir, tmp_path):
    from typer.testing import CliRunner

    from tdph_workflows.cli import app

    mdr = tmp_path / "mdr"
    mdr.mkdir()
    for s in small_sources[:2]:
        (mdr / Path(s).name).symlink_to(s)
    runner = CliRunner()
    fixed = labels == "fixed"
    r = runner.invoke(app, ["finetune", "build-dataset", "--mdr-dir", str(mdr), "--out", str(tmp_path / "ds"),
                            "--labels", labels, "--n-configs", "2", "--holdout", "mp-546711", "--workers", "1"])
    assert r.exit_code == 0, r.output
    counts = "2 structures, val 1 / 2" if fixed else "1 cells, val 1 / 1"
    assert f"train 1 compounds / {counts}" in " ".join(r.output.split())
    train = ["--batch-size", "2", "--accelerator", "cpu"] if fixed else ["--atoms-per-batch", "32"]
    r = runner.invoke(app, ["finetune", "train", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "tr"),
                            "--epochs", "1", *train])
    assert r.exit_code == 0, r.output
    assert ("1 epochs" if fixed else "1/1 epochs (complete)") in " ".join(r.output.split())
    r = runner.invoke(app, ["finetune", "evaluate", "--model", f"tuned={tmp_path / 'tr' / 'model'}", "--dataset",
                            str(tmp_path / "ds"), "--baseline", str(model_dir), "--compare", "effective-medium=emt",
                            "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    by_model = summary["by_model"]
    assert list(by_model) == [model_dir.name, "tuned", "effective-medium"]
    assert by_model["tuned"]["compounds"] == by_model[model_dir.name]["compounds"] == 1
    assert by_model["effective-medium"]["compounds"] == 0 and by_model["effective-medium"]["failed"]  # EMT: no K/Cl/O
    assert "tuned: 1/1" in r.output  # progress


@pytest.mark.parametrize("labels", ["fixed", "on-the-fly"])
def test_finetune_maker_runs_end_to_end_on_the_job_store(labels, small_sources, model_dir, database, tmp_path):
    from jobflow import run_locally

    from tdph_workflows.campaign.settings import DatabaseSettings
    from tdph_workflows.campaign.stores import job_store
    from tdph_workflows.makers import FineTuneMaker

    store = job_store(DatabaseSettings(database.uri, f"test_finetune_maker_{labels.replace('-', '')}", "embedded"))
    data, train = (({"n_configs": 2, "val_fraction": 0.3}, {"epochs": 1, "batch_size": 2, "accelerator": "cpu"})
                   if labels == "fixed" else ({"val_fraction": 0.3}, {"epochs": 1, "atoms_per_batch": 32}))
    maker = FineTuneMaker(work_dir=str(tmp_path), base_model=str(model_dir), labels=labels,
                          dataset_settings=data, train_settings=train)
    flow = maker.make(small_sources)
    run_locally(flow, store=store, ensure_success=True)
    store.connect()
    try:
        out = store.get_output(flow.jobs[2].uuid)
        fit = store.get_output(flow.jobs[1].uuid)
    finally:
        store.close()
    assert set(out["summary"]["by_model"]) == {"pretrained", "fine-tuned"}
    assert all(s["compounds"] == 1 for s in out["summary"]["by_model"].values())
    assert fit["epochs_completed"] == 1 and Path(fit["model"], "model.json").exists()


def test_shipped_fine_tuned_model_loads_by_name_and_beats_the_base_on_held_out_nacl(mdr_dir, model_dir):
    from conftest import require

    from tdph_workflows.io.mdr import load_mdr_entry
    from tdph_workflows.potentials import compare_harmonic_to_dft, model_fingerprint, resolve_calculator, shipped_model

    name = "TDPH-M3GNet-MDR-PBEsol-2026.11"
    folder = shipped_model(name)
    assert folder is not None and (folder / "README.md").exists() and model_fingerprint(name)
    assert "mp-22862" in (Path(__file__).parents[1] / "benchmarks/finetune/holdout_families.txt").read_text()
    entry = load_mdr_entry(require(mdr_dir / "curated" / "mp-22862_NaCl", "curated NaCl"))  # held out of training
    tuned = compare_harmonic_to_dft(entry, resolve_calculator(name)).mae_thz
    base = compare_harmonic_to_dft(entry, resolve_calculator(str(model_dir))).mae_thz
    assert tuned < 0.6 * base, (tuned, base)  # measured 0.12 vs 0.37 THz


def test_default_model_is_the_shipped_fine_tune_and_the_foundation_model_loads_by_name(mdr_dir, model_dir,
                                                                                         monkeypatch):
    """The default potential is shipped and beats its foundation model on a compound neither trained on."""
    from conftest import require

    from tdph_workflows.io.mdr import load_mdr_entry
    from tdph_workflows.potentials import (
        DEFAULT_MODEL,
        FOUNDATION_MODEL,
        compare_harmonic_to_dft,
        model_fingerprint,
        model_spec,
        named_model,
        resolve_calculator,
        shipped_model,
    )

    monkeypatch.delenv("TDPH_MODEL", raising=False)
    assert model_spec() == DEFAULT_MODEL and (shipped_model(DEFAULT_MODEL) / "README.md").exists()
    assert named_model(FOUNDATION_MODEL) == model_dir  # TDPH_MODEL_PATH: by name, offline
    assert model_fingerprint(FOUNDATION_MODEL) == model_fingerprint(str(model_dir))
    held_out = (Path(__file__).parents[1] / "benchmarks/finetune/validation_2026.12.txt").read_text().splitlines()
    assert "mp-561561  # Cs2KRhF6" in held_out  # held out, and not marked seen-by-2026.11
    entry = load_mdr_entry(require(mdr_dir / "raw_lt20atoms" / "materials-id-561561-cs2krhf6-fm-3m-225.tar.lzma",
                                   "Cs2KRhF6"))
    tuned = compare_harmonic_to_dft(entry, resolve_calculator(None))
    base = compare_harmonic_to_dft(entry, resolve_calculator(FOUNDATION_MODEL))
    # stable in DFT (min 1.45 THz); the foundation model has it unstable (-1.21 THz, MAE 2.08 THz)
    assert tuned.stability_agrees and not base.stability_agrees
    assert tuned.mae_thz < 0.6 * base.mae_thz, (tuned.mae_thz, base.mae_thz)

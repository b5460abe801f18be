"""On-the-fly fine-tuning: exact sub-cell folding, fixed-graph forces, a resumable trainer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tdph_workflows.finetune.cells import divisor_multiples, gamma_frequencies, training_cells
from tdph_workflows.finetune.onthefly import harmonic_targets, learning_rate_factor, plan_epoch

SMALL = ["materials-id-546633-kclo4-f-43m-216.tar.lzma", "materials-id-546711-csclo4-f-43m-216.tar.lzma",
         "materials-id-550759-rbclo4-f-43m-216.tar.lzma"]  # 24-atom supercells


def test_divisor_multiples_are_maximal_and_fit():
    assert divisor_multiples((2, 2, 2), 8, 64) == [(2, 2, 2)]  # the whole supercell fits
    ms = divisor_multiples((3, 3, 3), 5, 64)  # SrTiO3: 135 atoms -> prod(m) <= 12
    assert sorted(ms) == [(1, 3, 3), (3, 1, 3), (3, 3, 1)]
    assert divisor_multiples((4, 4, 4), 2, 32) == sorted(divisor_multiples((4, 4, 4), 2, 32))
    for m in divisor_multiples((4, 4, 4), 2, 32):
        assert np.prod(m) * 2 <= 32 and np.prod(m) == 16


def test_folded_sub_cells_have_the_supercell_frequencies_at_their_commensurate_q(mdr_dir):
    """SrTiO3 3x3x3 (135 atoms) folded to 45-atom sub-cells: Gamma of the sub-cell = q of the supercell."""
    from conftest import require
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points

    from tdph_workflows.io.mdr import load_mdr_entry

    entry = load_mdr_entry(require(mdr_dir / "curated" / "mp-5229_SrTiO3", "curated SrTiO3"))
    ph = entry.phonon
    fc = entry.dft_force_constants()
    ph.force_constants = fc
    ph.nac_params = None  # the folding is about the short-range Phi; NAC would add a q-dependent term
    mass_of = dict(zip(ph.unitcell.numbers, ph.unitcell.masses, strict=True))
    cells = training_cells(ph.unitcell, ph.supercell_matrix, ph.supercell, fc, 64)
    assert {c.multiple for c in cells} == {(3, 3, 1), (3, 1, 3), (1, 3, 3)}
    for cell in cells:
        assert cell.n_atoms == 45 and np.allclose(cell.fc, cell.fc.T)
        masses = np.array([mass_of[z] for z in cell.numbers])
        ours = np.sort(gamma_frequencies(cell, masses))
        qs = get_commensurate_points(np.linalg.inv(ph.primitive_matrix) @ np.diag(cell.multiple))
        ph.run_qpoints(qs)
        ref = np.sort(ph.get_qpoints_dict()["frequencies"].ravel())
        assert np.abs(ours - ref).max() < 1e-4, np.abs(ours - ref).max()
    assert ours.min() == pytest.approx(-2.377, abs=0.01)  # the soft modes survive the folding: DFT SrTiO3 is unstable at R and Gamma


def test_labels_schedule_and_epoch_plan():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 6))
    phi = a @ a.T
    u = rng.standard_normal((2, 3)) * 0.02
    f, e = harmonic_targets(phi, u, -3.0)
    assert np.allclose(f.ravel(), -phi @ u.ravel()) and e == pytest.approx(-3.0 + 0.5 * u.ravel() @ phi @ u.ravel())
    total = 100
    lrs = [learning_rate_factor(s, total, 0.05, 0.1) for s in range(total)]
    assert lrs[0] < lrs[4] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1, abs=0.01)
    assert all(x >= y for x, y in itertools.pairwise(lrs[5:]))
    atoms = [[10, 20], [40], [64], [5]]
    plan = plan_epoch([2, 1, 1, 1], atoms, 64, seed=0, epoch=3)
    assert sorted(c for b in plan for c, _ in b) == [0, 1, 2, 3]  # every compound once
    assert all(sum(atoms[c][k] for c, k in b) <= 64 for b in plan)
    assert plan == plan_epoch([2, 1, 1, 1], atoms, 64, seed=0, epoch=3)


@pytest.fixture(scope="module")
def cell_dataset(mdr_dir, model_dir, tmp_path_factory):
    from conftest import require

    from tdph_workflows.finetune.cell_dataset import CellDatasetSettings, build_cell_dataset

    sources = [str(require(mdr_dir / "raw_lt20atoms" / name, "MDR tarball")) for name in SMALL]
    out = tmp_path_factory.mktemp("cells") / "dataset"
    m = build_cell_dataset(sources, out, CellDatasetSettings(max_cell_atoms=64), holdout=["mp-550759"],
                           base_model=str(model_dir), workers=1)
    assert m["counts"]["train"]["compounds"] == 2 and m["counts"]["val"]["compounds"] == 1
    return out


def test_cell_dataset_is_cached_and_reports_bad_entries(cell_dataset, model_dir, mdr_dir, tmp_path):
    import json

    from tdph_workflows.finetune.cell_dataset import CellDatasetSettings, build_cell_dataset, load_compound_cells

    m = json.loads((cell_dataset / "manifest.json").read_text())
    (rec,) = [r for r in m["compounds"] if r["material_id"] == "mp-546633"]
    cells = load_compound_cells(cell_dataset, "mp-546633")
    assert rec["cell_atoms"] == [len(c["numbers"]) for c in cells] == [24]
    assert cells[0]["fc"].shape == (72, 72) and np.isfinite(float(cells[0]["e_ref"]))
    again = build_cell_dataset(m["sources"], cell_dataset, CellDatasetSettings(max_cell_atoms=64),
                               holdout=["mp-550759"], base_model=str(model_dir), workers=1)
    assert again == m  # same request: the manifest as is
    broken = tmp_path / "broken.tar.lzma"
    broken.write_bytes(b"not an archive")
    out = build_cell_dataset([str(broken), m["sources"][0]], tmp_path / "d", base_model=str(model_dir), workers=1)
    assert len(out["compounds"]) == 1 and out["skipped"][0]["source"] == str(broken)


def test_moving_fractional_coordinates_on_a_fixed_graph_gives_the_fresh_graph_forces(cell_dataset, model_dir):
    """The trainer builds each graph once; at <= 0.05 A the forces must equal those of a rebuilt graph."""
    from ase import Atoms

    from tdph_workflows.finetune.dataset import random_displacements
    from tdph_workflows.finetune.onthefly import OnTheFlySettings, OnTheFlyTrainer
    from tdph_workflows.potentials import resolve_calculator

    trainer = OnTheFlyTrainer(cell_dataset, cell_dataset.parent / "unused", str(model_dir),
                              OnTheFlySettings(epochs=1), device="cpu")
    trainer.potential.eval()
    calc = resolve_calculator(str(model_dir))
    for cell in trainer.train_cells[0] + trainer.val_cells[0]:
        u = random_displacements(np.random.default_rng(2), 1, cell.n_atoms, 0.05, 0.05)[0]
        _, forces, _, _, _ = trainer._forward([cell], [u])
        frac = cell.frac0.numpy().astype(float) + u @ cell.inv_lattice
        lattice = np.linalg.inv(cell.inv_lattice)
        atoms = Atoms(numbers=cell.numbers, scaled_positions=frac, cell=lattice, pbc=True)
        atoms.calc = calc
        assert np.abs(forces.detach().numpy() - atoms.get_forces()).max() < 2e-4


@pytest.mark.slow
def test_on_the_fly_training_learns_and_a_resumed_run_equals_an_uninterrupted_one(cell_dataset, model_dir,
                                                                                   tmp_path):
    import torch

    from tdph_workflows.finetune.onthefly import OnTheFlySettings, OnTheFlyTrainer

    settings = OnTheFlySettings(epochs=6, atoms_per_batch=24, lr=1e-4, val_configs=1)
    straight = OnTheFlyTrainer(cell_dataset, tmp_path / "straight", str(model_dir), settings, device="cpu")
    report = straight.run(log=lambda m: None)
    assert report["complete"] and report["epochs_completed"] == 6 and len(report["history"]) == 7
    hist = report["history"]
    assert hist[-1]["val_force_mae"] < hist[0]["val_force_mae"], hist  # held-out compound improves
    assert (tmp_path / "straight" / "model" / "README.md").exists()

    interrupted = OnTheFlyTrainer(cell_dataset, tmp_path / "resumed", str(model_dir), settings, device="cpu")
    interrupted.run(log=lambda m: interrupted.request_stop() if m.startswith("epoch 3/6:") else None)
    partial = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["progress"]
    assert partial["epoch"] == 3
    resumed = OnTheFlyTrainer(cell_dataset, tmp_path / "resumed", str(model_dir), settings, device="cpu")
    again = resumed.run(log=lambda m: None)
    assert again["resumed"] and again["complete"]
    a, b = straight.potential.model.state_dict(), resumed.potential.model.state_dict()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-5
    with pytest.raises(ValueError, match="other settings"):
        OnTheFlyTrainer(cell_dataset, tmp_path / "resumed", str(model_dir),
                        OnTheFlySettings(epochs=6, atoms_per_batch=24, lr=2e-4, val_configs=1), device="cpu").run()

"""Analysis at campaign scale: prototype/polyhedron cache, and a report page that shows a page of rows at a time."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tdph_workflows.analysis import screening


def _rendered(url: str) -> str:
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if chromium is None:
        pytest.skip("no chromium/chrome on PATH (apt install chromium)")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--virtual-time-budget=5000", "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def _tables(a_nacl: float = 5.6):
    nacl = Structure.from_spacegroup(225, Lattice.cubic(a_nacl), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    cscl = Structure.from_spacegroup(221, Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    materials = pd.DataFrame([{"material_id": "NaCl", "unitcell": nacl.as_dict()},
                              {"material_id": "CsCl", "unitcell": cscl.as_dict()}])
    sites = pd.DataFrame({"material_id": ["NaCl"] * 8 + ["CsCl"] * 2, "site": [*range(8), 0, 1],
                          "r_onsite": [0.3] * 4 + [0.01] * 4 + [0.5, 0.01]})
    return materials, sites


@pytest.fixture
def counted(monkeypatch):
    """Counts calls of the prototype matcher and of the polyhedron rule (in this process: workers=1)."""
    calls = {"prototype": 0, "polyhedron": 0}
    proto, poly = screening.aflow_prototype, screening.coordination_polyhedron

    def count_proto(s):
        calls["prototype"] += 1
        return proto(s)

    def count_poly(s, i):
        calls["polyhedron"] += 1
        return poly(s, i)

    monkeypatch.setattr(screening, "aflow_prototype", count_proto)
    monkeypatch.setattr(screening, "coordination_polyhedron", count_poly)
    return calls


def test_warm_annotate_reads_the_cache_and_a_changed_structure_is_recomputed(tmp_path, counted):
    materials, sites = _tables()
    first, strong = screening.annotate(materials, sites, 0.15, cache_dir=tmp_path)
    assert counted == {"prototype": 2, "polyhedron": 2}  # the 4 strong Na sites are one orbit
    assert "rock" in first.set_index("material_id").loc["NaCl", "prototype"].lower()
    assert list(strong["polyhedron"]) == ["octahedron"] * 4 + ["cube"]
    assert len(list(tmp_path.glob("*.annotation.json"))) == 2

    again, strong2 = screening.annotate(materials, sites, 0.15, cache_dir=tmp_path)
    assert counted == {"prototype": 2, "polyhedron": 2}  # nothing recomputed
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(strong, strong2)

    _, low = screening.annotate(materials, sites, 0.005, cache_dir=tmp_path)  # asks for the Cl sites too
    assert counted == {"prototype": 2, "polyhedron": 4} and len(low) == 10

    changed, _ = _tables(a_nacl=5.7)  # a relaxed cell is another structure: matched again
    screening.annotate(changed, sites, 0.15, cache_dir=tmp_path)
    assert counted["prototype"] == 3


def test_a_matcher_failure_is_labelled_cached_and_still_reported(tmp_path, monkeypatch, caplog):
    materials, sites = _tables()

    def boom(_s):
        raise RuntimeError("matcher exploded")

    monkeypatch.setattr(screening, "aflow_prototype", boom)
    broken = pd.concat([materials, pd.DataFrame([{"material_id": "bad", "unitcell": {"not": "a structure"}}])])
    sites = pd.concat([sites, pd.DataFrame({"material_id": ["NaCl"], "site": [99], "r_onsite": [0.9]})])
    with caplog.at_level(logging.WARNING, logger=screening.log.name):
        labelled, strong = screening.annotate(broken, sites, 0.15, cache_dir=tmp_path)
    assert set(labelled["prototype"]) == {"unmatched"} and "octahedron" in set(strong["polyhedron"])
    assert strong.set_index("site").loc[99, "polyhedron"] == "unknown"  # no such site: labelled, not fatal
    assert "matcher exploded" in caplog.text and "bad: no structure" in caplog.text and "site 99" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=screening.log.name):
        screening.annotate(broken, sites, 0.15, cache_dir=tmp_path)  # from the cache: still said
    assert "matcher exploded" in caplog.text


def test_annotate_in_spawned_workers_equals_serial(tmp_path):
    materials, sites = _tables()
    serial = screening.annotate(materials, sites, 0.15)
    pooled = screening.annotate(materials, sites, 0.15, workers=2, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(serial[0], pooled[0])
    pd.testing.assert_frame_equal(serial[1], pooled[1])
    assert len(list(tmp_path.glob("*.annotation.json"))) == 2  # written by the workers


def test_report_embeds_every_row_but_puts_one_page_in_the_table(tmp_path):
    from tdph_workflows.analysis.report import write_report

    n = 450
    rows = pd.DataFrame({"material_id": [f"mp-{i}" for i in range(n)], "formula": ["NaCl"] * (n - 1) + ["CsPbBr3"],
                         "grade": ["B"] * n, "spacegroup": ["Fm-3m (225)"] * n, "r_onsite_max": range(n)})
    rows.to_csv(tmp_path / "materials.csv", index=False)
    (tmp_path / "summary.json").write_text(json.dumps({
        "n_materials": n, "n_sites": 2 * n, "temperature": 300.0, "n_candidates": 0, "threshold": 0.15,
        "top_elements": [], "top_spacegroups": []}))
    page = write_report(tmp_path, page_size=200).read_text()
    data = json.loads(re.search(r"const rows = (\[.*?\]);\n", page).group(1))
    assert len(data) == n and {r["material_id"] for r in data} == set(rows["material_id"])
    assert 'id="more"' in page and "const PAGE = 200;" in page
    assert "setTimeout(render, 150)" in page  # the search is debounced

    dom = _rendered(page_uri := (tmp_path / "report.html").as_uri())
    assert dom.count("<tr data-material=") == 200
    assert f"{n} of {n} materials (first 200 shown)" in dom and "show 200 more" in dom
    assert re.search(r'<tr data-material="mp-449">', dom)  # default order: largest max R_onsite first
    one = _rendered(page_uri + "#q=cspb")  # the URL hash still filters; one match: no "show more"
    assert one.count("<tr data-material=") == 1 and "1 of 450 materials" in one
    assert re.search(r'<button id="more" type="button" hidden', one)


def test_equivalent_site_rows_are_fitted_once_with_their_multiplicity():
    """Collapsed rows carry their multiplicity: counts, split metrics and CV stay per site, with fewer rows."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupShuffleSplit

    from tdph_workflows.analysis.models import ForestSettings, collapse_equivalent_rows, cross_validate, fit_forest

    rng = np.random.default_rng(0)
    rows, index, target = [], [], []
    for m in range(40):  # 40 materials, each 2-3 orbits of 1-4 equivalent sites (identical features and target)
        site = 0
        for _ in range(rng.integers(2, 4)):
            f = rng.normal(size=4)
            for _ in range(rng.integers(1, 5)):
                rows.append(f)
                target.append(float(abs(f[0]) + 0.1 * f[1] ** 2))
                index.append((f"mp-{m}", site))
                site += 1
    x = pd.DataFrame(rows, columns=list("abcd"), index=pd.MultiIndex.from_tuples(index, names=["material_id", "site"]))
    y = pd.Series(target, index=x.index)
    xc, _, w = collapse_equivalent_rows(x, y)
    assert len(xc) < len(x) and w.sum() == len(x)
    assert all(w[k] == ((x == xc.iloc[k]).all(axis=1)).sum() for k in range(len(xc)))
    settings = ForestSettings(n_estimators=20, test_fraction=0.25)
    fitted = fit_forest(x, y, "local", settings)
    assert fitted.metrics["n_train"] + fitted.metrics["n_test"] == len(x)
    assert fitted.metrics["n_distinct_rows"] == len(xc)
    # the weighted test R^2 of the collapsed rows is the plain R^2 over every site of the test materials
    groups = xc.index.get_level_values(0)
    _, te = next(GroupShuffleSplit(1, test_size=0.25, random_state=0).split(xc, groups=groups))
    test_sites = x[x.index.get_level_values(0).isin(set(groups[te]))]
    assert len(test_sites) == fitted.metrics["n_test"]
    assert np.isclose(fitted.metrics["test_r2"], r2_score(y[test_sites.index], fitted.predict(test_sites)))
    cv = cross_validate(x, y, "local", settings)
    assert cv["folds"] == 5 and np.isfinite(cv["r2_mean"])


def test_a_structure_aflow_does_not_know_is_typed_by_anonymous_formula_and_space_group():
    assert screening.structure_type("unmatched", "SrTiO3", 62) == "ABC3 sg62 (no AFLOW match)"
    assert screening.structure_type("AB_cF8_225_a_b (Halite)", "NaCl", 225) == "AB_cF8_225_a_b (Halite)"
    assert screening.structure_type("unmatched", float("nan"), 1) == "unmatched"  # no formula: left as it was
    materials, sites = _tables()
    distorted = Structure(Lattice.from_parameters(5.1, 5.9, 7.3, 88, 95, 101), ["Na", "Na", "Cl", "Cl"],
                          [[0, 0, 0], [0.41, 0.13, 0.57], [0.23, 0.61, 0.19], [0.77, 0.35, 0.88]])
    materials = materials.assign(formula=["NaCl", "CsCl"], spacegroup_number=[225, 221],
                                 unitcell=[distorted.as_dict(), materials["unitcell"][1]])  # no AFLOW prototype
    labelled, _ = screening.annotate(materials, sites, 0.15)
    assert labelled.set_index("material_id").loc["NaCl", "prototype"] == "AB sg225 (no AFLOW match)"

"""`tdph campaign publish`: a campaign as a dataset (rows, per-site JSON, card, analyses, report, comparison)."""

from __future__ import annotations

import copy
import gzip
import json

import pandas as pd
import pytest
from test_analysis import UNTRUSTWORTHY, synthetic_summaries
from typer.testing import CliRunner

from tdph_workflows.analysis.dataset import COLUMNS, dataset_row
from tdph_workflows.campaign import registry
from tdph_workflows.campaign.settings import DatabaseSettings
from tdph_workflows.cli import app

SUMMARIES = synthetic_summaries()
N_COMPLETED = len(SUMMARIES)


@pytest.fixture(scope="module")
def published(database, tmp_path_factory):
    db = DatabaseSettings(database.uri, "test_dataset", "embedded")
    coll = registry.collection(db)
    coll.delete_many({})
    for s in copy.deepcopy(SUMMARIES):
        coll.insert_one({"key": s["material_id"], "material_id": s["material_id"], "campaign": "syn",
                         "state": "COMPLETED", "summary": s, "wall_time": 12.5, "setup_key": "setup-1",
                         "source": f"/somewhere/private/{s['material_id']}.tar.lzma", "job_uuid": None})
    coll.insert_one({"key": "bad", "material_id": "mp-bad", "campaign": "syn", "state": "FAILED",
                     "error": "ValueError: mp-bad: DFT forces hold NaN\nsecond line", "traceback": "Traceback ...",
                     "source": "/somewhere/mp-bad.tar.lzma"})
    coll.insert_one({"key": "old", "material_id": "mp-old", "campaign": "syn", "state": "SUPERSEDED"})
    coll.insert_one({"key": "todo", "material_id": "mp-todo", "campaign": "syn", "state": "WAITING"})
    coll.insert_one({"key": "other", "material_id": "mp-other", "campaign": "other", "state": "FAILED", "error": "x"})
    out = tmp_path_factory.mktemp("published") / "syn"
    env = {"TDPH_DB_URI": database.uri, "TDPH_DB_NAME": "test_dataset"}
    r = CliRunner().invoke(app, ["campaign", "publish", "--campaign", "syn", "--out", str(out), "--min-group-size", "3"],
                           env=env)
    assert r.exit_code == 0, r.output
    return db, out, env, r.output


def test_one_row_per_settled_material_with_failures_and_their_reason(published):
    _, out, _, output = published
    rows = pd.read_csv(out / "materials.csv", keep_default_na=False)
    assert list(rows.columns) == COLUMNS
    assert len(rows) == N_COMPLETED + 1  # the failure is a row; superseded, waiting and other campaigns are not
    assert set(rows["state"]) == {"COMPLETED", "FAILED"}
    failed = rows[rows["state"] == "FAILED"].iloc[0]
    assert failed["material_id"] == "mp-bad" and failed["error"] == "ValueError: mp-bad: DFT forces hold NaN"
    assert "/somewhere" not in (out / "materials.csv").read_text()  # file names only, no machine paths
    assert rows["grade"].iloc[0] == "B" and rows[rows["grade"] == "F"].shape[0] == len(UNTRUSTWORTHY)
    cs = rows[rows["formula"] == "CsCl"].iloc[0]
    assert cs["prototype"].startswith("AB_cP2_221") and "Cs" in cs["r_onsite_sites"]
    assert f"{N_COMPLETED + 2} records" in output and "1 WAITING" in output


def test_json_keeps_the_per_site_records_of_the_database(published):
    db, out, _, _ = published
    with gzip.open(out / "materials.json.gz", "rt") as fh:
        records = {r["material_id"]: r for r in json.load(fh)}
    stored = registry.collection(db).find_one({"material_id": "mp-7"})["summary"]
    assert records["mp-7"]["sites"] == [
        {k: s[k] for k in ("index", "element", "wyckoff", "r_onsite", "r_onsite_stderr")}
        for s in stored["temperatures"][0]["sites"]]
    assert records["mp-7"]["unitcell"]["lattice"] == stored["unitcell"]["lattice"]
    assert isinstance(records["mp-7"]["grade_reasons"], list)


def test_trusted_and_every_grade_analyses_side_by_side(published):
    _, out, _, _ = published
    trusted = json.loads((out / "analysis_trusted" / "summary.json").read_text())
    every = json.loads((out / "analysis_all" / "summary.json").read_text())
    assert every["n_materials"] == N_COMPLETED
    assert trusted["n_materials"] == N_COMPLETED - len(UNTRUSTWORTHY)
    assert trusted["left_out_by_grade"] == {"F": len(UNTRUSTWORTHY)}
    assert all(g["n_materials"] >= 3 for g in trusted["top_spacegroups_min"])
    assert all(e["n_materials"] >= 3 for e in trusted["top_elements_min"])
    assert not any(out.rglob("features_*.csv")) and not any(out.rglob("*.joblib"))  # heavy files stay in work
    page = (out / "comparison.md").read_text()
    assert "| strongest elements (mean R_onsite, in ≥ 3 materials) | Rb, Cs, Tl (H noted) |" in page
    for planted in ("Cs", "Tl", "Rb"):  # the synthetic set plants the paper's elements: found on both sides
        assert planted in page.split("strongest elements")[1].split("\n")[0]
    assert "trusted: 3 of the paper's strongest elements" in page
    assert f"| F became_unstable | {len(UNTRUSTWORTHY)} |" in page and f"| B one_shot | {N_COMPLETED - len(UNTRUSTWORTHY)} |" in page


def test_card_report_and_the_same_dataset_from_an_exported_file(published, tmp_path):
    _, out, env, _ = published
    card = (out / "DATACARD.md").read_text()
    assert "CC BY 4.0" in card and f"{N_COMPLETED} COMPLETED" in card and "1 FAILED" in card
    assert "tdph campaign publish" in card and "B " in card.split("by trust grade:")[1]
    html = (out / "report.html").read_text()
    assert html.count('"material_id"') >= N_COMPLETED + 1  # every row in the page's data, failures excluded
    exported = tmp_path / "records.jsonl.gz"
    r = CliRunner().invoke(app, ["campaign", "export", "--out", str(exported), "--campaign", "syn"], env=env)
    assert r.exit_code == 0, r.output
    again = tmp_path / "again"
    r = CliRunner().invoke(app, ["campaign", "publish", "--records", str(exported), "--out", str(again),
                                 "--min-group-size", "3", "--work-dir", str(out.parent / "syn-work")],
                           env={"TDPH_DB_URI": "mongodb://127.0.0.1:1"})  # warm feature cache of the first
    assert r.exit_code == 0, r.output  # no database needed
    first = pd.read_csv(out / "materials.csv", keep_default_na=False)
    second = pd.read_csv(again / "materials.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(first, second)


def test_a_row_without_a_result_has_no_metrics():
    row = dataset_row({"material_id": "mp-1", "state": "FAILED", "error": "RuntimeError: boom"})
    assert row["error"] == "RuntimeError: boom" and row["l2_shift_pct"] is None and row["grade"] == ""
    s = copy.deepcopy(SUMMARIES[0])
    row = dataset_row({"material_id": "mp-1", "state": "COMPLETED", "summary": s, "wall_time": 3.0})
    assert row["l2_shift_pct"] == round(100 * s["temperatures"][0]["l2_shift"], 3)


def test_a_record_whose_wall_time_was_dropped_says_why():
    s = copy.deepcopy(SUMMARIES[0])
    note = "wall time not measured: the worker was paused (SIGSTOP) while it ran this material"
    row = dataset_row({"material_id": "mp-1", "state": "COMPLETED", "summary": s, "wall_time": None,
                       "wall_time_note": note})
    assert row["wall_s"] is None and row["wall_time_note"] == note and row["l2_shift_pct"] is not None
    assert dataset_row({"material_id": "mp-1", "state": "COMPLETED", "summary": s, "wall_time": 3.0})["wall_time_note"] == ""


def test_publish_refuses_an_empty_campaign(published):
    _, _, env, _ = published
    r = CliRunner().invoke(app, ["campaign", "publish", "--campaign", "nothing", "--out", "/tmp/x"], env=env)
    assert r.exit_code != 0 and "no records to publish in campaign nothing" in r.output


def test_reproduce_commands_carry_every_distinct_setting():
    from tdph_workflows.analysis.dataset import reproduce_commands

    settings = [{"model": "M", "temperatures": [300.0], "settings": {"self_consistent": False}, "n_fireworks": 59},
                {"model": "M", "temperatures": [300.0], "settings": {"known_failure_pairs": 16}, "n_fireworks": 939},
                {"model": "M", "temperatures": [300.0],
                 "settings": {"known_failure_pairs": 16, "known_failure_keeps_cell": True}, "n_fireworks": 880}]
    commands = reproduce_commands(settings, "mdr-full", "datasets/mdr-full", "MDR")
    submits = [c for c in commands if c.startswith("tdph campaign submit")]
    assert submits == ["tdph campaign submit --mdr-dir MDR -T 300 --model M --chunk-size 4 --campaign mdr-full",
                       ("tdph campaign submit --mdr-dir MDR -T 300 --model M --known-failure-pairs 16 --chunk-size 4 "
                        "--campaign mdr-full"),
                       ("tdph campaign submit --mdr-dir MDR -T 300 --model M --known-failure-pairs 16 "
                        "--known-failure-keeps-cell --chunk-size 4 --campaign mdr-full")]
    assert commands[0] == "tdph db start" and commands[-1] == "tdph campaign publish --out datasets/mdr-full --campaign mdr-full"

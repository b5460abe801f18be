"""Copy an on-the-fly training into a model folder with its card and last checkpoint.

    python benchmarks/finetune/release_model.py --training tdph_finetune/training_otf \
        --dataset tdph_finetune/cells --name TDPH-M3GNet-MDR-PBEsol-2026.12

The folder gets the matgl files (model.json, model.pt, state.pt), metrics.json (training report and
the accuracy tables), README.md (the model card: data, split, recipe, time, accuracy, commands) and
resume/ (the last checkpoint and training.json, for `tdph finetune train --resume-from`). The
accuracy tables are the ones the benchmark scripts wrote under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import RESULTS, ROOT

TABLES = {
    "finetune_validation": "Harmonic frequencies vs DFT on the 199 held-out compounds",
    "finetune_validation_s50": "The same, on a seeded sample of 50 held-out compounds, with SevenNet-0",
    "finetune_learning_curve": "Learning curve: the 50-compound sample after each epoch",
    "finetune_force_sets": "DFT forces by displacement amplitude (evaluation sets, never trained on)",
    "finetune_showcase": "SrTiO3 soft modes and KCl at 300 K (self-consistent)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--training", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--target", type=Path, help="folder to write (default: tdph_workflows/models/<name>, "
                                                    "which ships it in the package)")
    parser.add_argument("--summary", default="", help="one paragraph placed above the tables")
    args = parser.parse_args()
    from tdph_workflows.finetune.onthefly import model_card

    target = (args.target or ROOT / "tdph_workflows" / "models" / args.name).resolve()
    (target / "resume").mkdir(parents=True, exist_ok=True)
    for f in ("model.json", "model.pt", "state.pt"):
        shutil.copyfile(args.training / "model" / f, target / f)
    shutil.copyfile(args.training / "checkpoints" / "last.pt", target / "resume" / "last.pt")
    report = json.loads((args.training / "training.json").read_text())
    shutil.copyfile(args.training / "training.json", target / "resume" / "training.json")
    manifest = json.loads((args.dataset / "manifest.json").read_text())
    tables = {key: (RESULTS / f"{key}.md").read_text() for key in TABLES if (RESULTS / f"{key}.md").exists()}
    (target / "metrics.json").write_text(json.dumps({"training": report, "dataset_fingerprint": manifest["fingerprint"],
                                                     "counts": manifest["counts"], "skipped": manifest["skipped"],
                                                     "tables": tables}, indent=1))
    card = model_card(report, manifest).replace("# Fine-tuned matgl potential (tdph, on-the-fly harmonic labels)",
                                                f"# {args.name}: M3GNet fine-tuned on MDR PBEsol phonons (tdph)")
    card += f"\n{args.summary}\n" if args.summary else ""
    for key, title in TABLES.items():
        if key in tables:
            card += f"\n## {title}\n\n`benchmarks/results/{key}.md`\n\n{tables[key]}"
    card += f"""
## Use

`tdph run POSCAR --calculator {target.relative_to(ROOT)}`, `tdph campaign submit ... --model <this folder>`,
or `matgl.load_model("<this folder>")` (a folder under tdph_workflows/models/ is also found by its name).

## How this folder was made, and how to continue it

See docs/finetune.md: `tdph finetune build-dataset` (all of raw_lt20atoms + curated), `tdph finetune train`
(on the fly), `tdph finetune evaluate`, the benchmark scripts of benchmarks/finetune/, then
`python benchmarks/finetune/release_model.py --training <out> --dataset <dataset> --name {args.name}`.
Continue training on any machine with the same dataset:
`tdph finetune train --dataset <dataset> --out <out> --epochs <more> --resume-from {target.relative_to(ROOT)}/resume/last.pt`.
"""
    (target / "README.md").write_text(card)
    print(f"{target}: {sum(p.stat().st_size for p in target.rglob('*') if p.is_file()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

"""FineTuneMaker: dataset -> training (GPU category) -> zero-shot vs fine-tuned evaluation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobflow import Flow, Maker, job
from pydantic import BaseModel, Field


class FineTuneDatasetDoc(BaseModel):
    """Output of a dataset job: its folder, fingerprint, per-split counts and the skipped sources."""

    path: str
    fingerprint: str
    counts: dict[str, dict[str, int]]
    n_skipped: int
    skipped: list[dict[str, str]]
    validation_sources: list[str] = Field(description="Sources of the held-out compounds (for the evaluation)")


class FineTuneDoc(BaseModel):
    """Output of a training job: the fine-tuned model folder, its base model, timings (s) and validation history."""

    model: str = Field(description="Folder loadable by matgl.load_model and usable as --model")
    model_hash: str | None
    base_model: str
    epochs_completed: int
    epoch_seconds: list[float]
    wall_seconds: float
    val_history: list[dict[str, float]]
    settings: dict[str, Any]


class ModelEvaluationDoc(BaseModel):
    """Output of the evaluation job: its folder and the ``summary.json`` contents."""

    out_dir: str
    summary: dict[str, Any]


def dataset_document(out_dir: str, manifest: dict) -> FineTuneDatasetDoc:
    """The job output of either dataset builder, from its manifest."""
    return FineTuneDatasetDoc(path=out_dir, fingerprint=manifest["fingerprint"], counts=manifest["counts"],
                              n_skipped=len(manifest["skipped"]), skipped=manifest["skipped"],
                              validation_sources=[c["source"] for c in manifest["compounds"] if c["split"] == "val"])


@job
def build_dataset_job(sources: list[str], out_dir: str, settings: dict, holdout: list[str],
                      base_model: str | None) -> FineTuneDatasetDoc:
    """Fixed-label dataset (displaced supercells, ``finetune.dataset.build_dataset``); settings: DatasetSettings."""
    from ..finetune.dataset import DatasetSettings, build_dataset

    return dataset_document(out_dir, build_dataset(sources, out_dir, DatasetSettings(**settings), holdout,
                                                   base_model))


@job
def train_job(dataset_dir: str, out_dir: str, base_model: str | None, settings: dict) -> FineTuneDoc:
    """Train on a fixed-label dataset with matgl's lightning module; settings: TrainSettings fields."""
    from ..finetune.training import TrainSettings, train

    r = train(dataset_dir, out_dir, base_model, TrainSettings(**settings))
    return FineTuneDoc(model=r["model"], model_hash=r["model_hash"], base_model=r["base_model"],
                       epochs_completed=r["epochs_completed"], epoch_seconds=r["epoch_seconds"],
                       wall_seconds=r["wall_seconds"], val_history=r["val_history"], settings=r["settings"])


@job
def build_cell_dataset_job(sources: list[str], out_dir: str, settings: dict, holdout: list[str],
                           base_model: str | None) -> FineTuneDatasetDoc:
    """On-the-fly dataset (cells with DFT force constants, ``build_cell_dataset``); settings: CellDatasetSettings."""
    from ..finetune.cell_dataset import CellDatasetSettings, build_cell_dataset

    return dataset_document(out_dir, build_cell_dataset(sources, out_dir, CellDatasetSettings(**settings), holdout,
                                                        base_model))


@job
def train_on_the_fly_job(dataset_dir: str, out_dir: str, base_model: str | None, settings: dict) -> FineTuneDoc:
    """Resumes from ``out_dir``'s checkpoint: a rerun of a killed job continues where it stopped."""
    import time

    from ..finetune.onthefly import OnTheFlySettings, OnTheFlyTrainer

    t0 = time.perf_counter()
    settings = {**settings, "freeze": tuple(settings.get("freeze", ()))}
    r = OnTheFlyTrainer(dataset_dir, out_dir, base_model, OnTheFlySettings(**settings)).run(log=lambda m: None)
    epochs = [h for h in r["history"] if h["epoch"] > 0]
    return FineTuneDoc(model=r["model"], model_hash=r["model_hash"], base_model=r["base_model"],
                       epochs_completed=r["epochs_completed"], epoch_seconds=[h["epoch_seconds"] for h in epochs],
                       wall_seconds=time.perf_counter() - t0,
                       val_history=[{k: h[k] for k in ("epoch", "val_force_mae", "val_energy_mae")}
                                    for h in r["history"]], settings=r["settings"])


@job
def evaluate_job(sources: list[str], models: dict[str, str], out_dir: str) -> ModelEvaluationDoc:
    """Harmonic frequencies of each model (label -> calculator spec) against DFT on ``sources``."""
    from ..finetune.evaluation import evaluate

    return ModelEvaluationDoc(out_dir=out_dir, summary=evaluate(sources, models, out_dir))


@dataclass
class FineTuneMaker(Maker):
    """Fine-tune a matgl potential on MDR entries and compare it with the base model on held-out compounds.

    Parameters
    ----------
    work_dir
        Folder for dataset/, training/ and evaluation/ (shared storage on a cluster).
    base_model
        Model folder or matgl name to start from; None = ``FOUNDATION_MODEL`` (matgl's universal M3GNet).
    labels
        ``on-the-fly`` (default): cells with their DFT force constants, fresh displacements every
        step (``CellDatasetSettings``, ``OnTheFlySettings``); ``fixed``: stored displaced supercells
        trained with matgl's lightning module (``DatasetSettings``, ``TrainSettings``).
    dataset_settings, train_settings
        Fields of the settings classes named under ``labels``.
    holdout
        Material ids always held out of training (evaluated).
    train_category
        FireWorks category of the training job (``gpu``); the other two run as ``cpu``.
    """

    name: str = "tdph fine-tune"
    work_dir: str = "tdph_finetune"
    base_model: str | None = None
    labels: str = "on-the-fly"
    dataset_settings: dict[str, Any] = field(default_factory=dict)
    train_settings: dict[str, Any] = field(default_factory=dict)
    holdout: list[str] = field(default_factory=list)
    train_category: str = "gpu"

    def __post_init__(self) -> None:  # bad settings fail here, before any job runs
        from ..finetune.cell_dataset import CellDatasetSettings
        from ..finetune.dataset import DatasetSettings
        from ..finetune.onthefly import OnTheFlySettings
        from ..finetune.training import TrainSettings

        kinds = {"on-the-fly": (CellDatasetSettings, OnTheFlySettings), "fixed": (DatasetSettings, TrainSettings)}
        if self.labels not in kinds:
            raise ValueError(f"labels must be 'on-the-fly' or 'fixed', not {self.labels!r}")
        data_cls, train_cls = kinds[self.labels]
        train = dict(self.train_settings)
        if "freeze" in train:
            train["freeze"] = tuple(train["freeze"])
        self.dataset_settings = asdict(data_cls(**self.dataset_settings))
        self.train_settings = asdict(train_cls(**train))

    def make(self, sources: list[str | Path]) -> Flow:
        """Flow of dataset -> train -> evaluate for MDR entries (tarballs or folders); outputs the evaluation."""
        root = Path(self.work_dir).resolve()
        build, train = ((build_cell_dataset_job, train_on_the_fly_job) if self.labels == "on-the-fly"
                        else (build_dataset_job, train_job))
        data = build([str(s) for s in sources], str(root / "dataset"), self.dataset_settings,
                     list(self.holdout), self.base_model)
        data.name = "tdph fine-tune dataset"
        fit = train(data.output.path, str(root / "training"), self.base_model, self.train_settings)
        fit.name = "tdph fine-tune train"
        fit.update_config({"manager_config": {"_category": self.train_category}})
        from ..potentials import FOUNDATION_MODEL

        models = {"pretrained": self.base_model or FOUNDATION_MODEL, "fine-tuned": fit.output.model}
        check = evaluate_job(data.output.validation_sources, models, str(root / "evaluation"))
        check.name = "tdph fine-tune evaluate"
        for j in (data, check):
            j.update_config({"manager_config": {"_category": "cpu"}})
        return Flow([data, fit, check], output=check.output, name=self.name)

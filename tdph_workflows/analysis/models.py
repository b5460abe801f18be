"""Random-forest models of renormalization (paper Methods B): global R_full, local R_onsite.

Outliers are filtered first with the paper's rules (defaults): compounds whose model harmonic
frequencies deviate from DFT by more than 20 % (relative L2, from the MDR reference stored with each
result) and compounds whose frequencies change by more than 40 % under renormalization.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import boxcox, inv_boxcox

BOXCOX_LAMBDA = 0.074  # the paper's transform of R_onsite


@dataclass(frozen=True)
class OutlierRules:
    """Thresholds of `filter_outliers` (relative L2 deviations; the paper's defaults: 20 % and 40 %)."""

    max_dft_deviation: float = 0.20
    max_l2_shift: float = 0.40


@dataclass
class FilterReport:
    """What `filter_outliers` kept (a count) and dropped (material ids per rule)."""

    kept: int
    dropped_dft_deviation: list[str]
    dropped_l2_shift: list[str]
    without_dft_reference: int


def filter_outliers(materials: pd.DataFrame, rules: OutlierRules = OutlierRules()) -> tuple[pd.DataFrame, FilterReport]:
    """Drop the paper's outliers; materials without a DFT reference are kept (and counted)."""
    dev = materials["dft_deviation"].astype(float)
    bad_dft = dev > rules.max_dft_deviation
    bad_shift = ~bad_dft & (materials["l2_shift"] > rules.max_l2_shift)
    kept = materials[~bad_dft & ~bad_shift]
    return kept, FilterReport(len(kept), materials.loc[bad_dft, "material_id"].tolist(),
                              materials.loc[bad_shift, "material_id"].tolist(), int(dev.isna().sum()))


@dataclass(frozen=True)
class ForestSettings:
    """Random-forest hyperparameters, test fraction and seed of `fit_forest` / `cross_validate`."""

    n_estimators: int = 200
    max_depth: int = 18
    max_features: float = 0.5
    test_fraction: float = 0.1
    seed: int = 0
    grid_search: bool = False


GLOBAL_SETTINGS = ForestSettings()
LOCAL_SETTINGS = ForestSettings(max_depth=15, max_features=0.7)


@dataclass
class FittedModel:
    """A trained forest with its feature columns, optional Box-Cox lambda of the target, metrics and settings."""

    kind: str  # "global" (R_full) or "local" (R_onsite)
    model: object
    features: list[str]
    boxcox_lambda: float | None
    metrics: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """Predictions for the rows of `x` (its `features` columns), back-transformed from Box-Cox if fitted on it."""
        y = self.model.predict(x[self.features].to_numpy())
        return inv_boxcox(y, self.boxcox_lambda) if self.boxcox_lambda is not None else y

    def save(self, path: Path) -> None:
        """Pickle the whole model with joblib, creating the parent folder."""
        import joblib

        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path)

    @staticmethod
    def load(path: Path) -> FittedModel:
        """A model written by `save` (joblib: load only trusted files)."""
        import joblib

        return joblib.load(path)

    def importances(self, top: int = 10) -> pd.Series:
        """The `top` impurity-based feature importances, largest first, indexed by feature name."""
        return pd.Series(self.model.feature_importances_, index=self.features).sort_values(ascending=False)[:top]


def _forest(settings: ForestSettings):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=settings.n_estimators, max_depth=settings.max_depth,
                                 max_features=settings.max_features, random_state=settings.seed, n_jobs=-1)


def _usable(x: pd.DataFrame, y: pd.Series, kind: str) -> tuple[pd.DataFrame, pd.Series]:
    x = x.replace([np.inf, -np.inf], np.nan)
    keep = x.notna().all(axis=1) & y.notna()
    if keep.sum() < 10:
        raise ValueError(f"{kind} model: only {int(keep.sum())} usable rows (need >= 10)")
    return x[keep], y[keep]


def _target(y: pd.Series, boxcox_lambda: float | None) -> np.ndarray:
    return boxcox(np.clip(y.to_numpy(float), 1e-6, None), boxcox_lambda) if boxcox_lambda is not None else y.to_numpy(float)


def collapse_equivalent_rows(x: pd.DataFrame, y: pd.Series) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """One row per distinct (material, features, target), weighted by how many rows it stands for.

    Symmetry-equivalent sites of a material have identical features and R_onsite: fitting them once with
    their multiplicity as sample weight gives the same per-site weighting in every metric, with 3-4x
    fewer rows for the local forests of a campaign (fits scale with the rows).
    """
    key = pd.DataFrame(x.to_numpy(), copy=False).assign(_material=_groups(x), _target=y.to_numpy())
    hashes = pd.util.hash_pandas_object(key, index=False).to_numpy()
    _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    order = np.sort(first)
    weights = counts[np.argsort(first)].astype(float)
    return x.iloc[order], y.iloc[order], weights


def _groups(x: pd.DataFrame) -> np.ndarray:
    """The material of each row: its index itself (global) or the first level (local, (material_id, site))."""
    return np.asarray(x.index.get_level_values(0))


def fit_forest(x: pd.DataFrame, y: pd.Series, kind: str, settings: ForestSettings,
               boxcox_lambda: float | None = None, split: str = "material") -> FittedModel:
    """Seeded 90/10 split, optional grid search on the training part, test R^2 and MAE in target units.

    split="material" keeps all sites of a material on one side; split="site" is the paper's random split
    of rows, which for the local model puts symmetry-equivalent sites (identical features and target) of
    one material on both sides and so overstates R^2.
    """
    from sklearn.metrics import mean_absolute_error, r2_score
    from sklearn.model_selection import GridSearchCV, GroupShuffleSplit, train_test_split

    x, y = _usable(x, y, kind)
    # equivalent rows are collapsed only where they cannot straddle the split (the paper's site split keeps them)
    weights = np.ones(len(x))
    if split == "material":
        x, y, weights = collapse_equivalent_rows(x, y)
    target = _target(y, boxcox_lambda)
    if split == "material":
        tr, te = next(GroupShuffleSplit(1, test_size=settings.test_fraction, random_state=settings.seed)
                      .split(x, groups=_groups(x)))
    elif split == "site":
        tr, te = train_test_split(np.arange(len(x)), test_size=settings.test_fraction, random_state=settings.seed)
    else:
        raise ValueError(f"split must be 'material' or 'site', not {split!r}")
    x_tr, x_te, t_tr, t_te = x.to_numpy()[tr], x.to_numpy()[te], target[tr], target[te]
    y_tr, y_te, w_tr, w_te = y.to_numpy()[tr], y.to_numpy()[te], weights[tr], weights[te]
    forest = _forest(settings)
    if settings.grid_search:
        grid = {"max_depth": [10, settings.max_depth, None], "max_features": [0.3, settings.max_features, 1.0]}
        forest = GridSearchCV(forest, grid, cv=5, scoring="r2").fit(x_tr, t_tr, sample_weight=w_tr).best_estimator_
    else:
        forest.fit(x_tr, t_tr, sample_weight=w_tr)
    fitted = FittedModel(kind, forest, list(x.columns), boxcox_lambda, settings=asdict(settings))
    pred_te = fitted.predict(pd.DataFrame(x_te, columns=x.columns))
    pred_tr = fitted.predict(pd.DataFrame(x_tr, columns=x.columns))
    fitted.metrics = {"split": split, "n_train": int(w_tr.sum()), "n_test": int(w_te.sum()),
                      "n_distinct_rows": len(x), "n_test_materials": len(set(_groups(x)[te])),
                      "test_r2": float(r2_score(y_te, pred_te, sample_weight=w_te)),
                      "test_mae": float(mean_absolute_error(y_te, pred_te, sample_weight=w_te)),
                      "train_r2": float(r2_score(y_tr, pred_tr, sample_weight=w_tr)),
                      "params": {k: getattr(forest, k) for k in ("n_estimators", "max_depth", "max_features")}}
    if boxcox_lambda is not None:
        fitted.metrics["test_r2_boxcox"] = float(r2_score(t_te, forest.predict(x_te), sample_weight=w_te))
    return fitted


def cross_validate(x: pd.DataFrame, y: pd.Series, kind: str, settings: ForestSettings,
                   boxcox_lambda: float | None = None, folds: int = 5) -> dict:
    """R^2 and MAE over `folds` folds grouped by material.

    The spread of one 90/10 split's test R^2 is large for a campaign of ~100 materials, so this is the
    figure to compare models with. `folds` is capped at the number of materials; metrics are in the
    original (not Box-Cox) units of `y`.
    """
    from sklearn.metrics import mean_absolute_error, r2_score
    from sklearn.model_selection import GroupKFold

    x, y = _usable(x, y, kind)
    x, y, weights = collapse_equivalent_rows(x, y)
    target, groups = _target(y, boxcox_lambda), _groups(x)
    folds = min(folds, len(set(groups)))
    r2, mae = [], []
    for tr, te in GroupKFold(folds).split(x, groups=groups):
        forest = _forest(settings).fit(x.to_numpy()[tr], target[tr], sample_weight=weights[tr])
        pred = forest.predict(x.to_numpy()[te])
        if boxcox_lambda is not None:
            pred = inv_boxcox(pred, boxcox_lambda)
        r2.append(r2_score(y.to_numpy()[te], pred, sample_weight=weights[te]))
        mae.append(mean_absolute_error(y.to_numpy()[te], pred, sample_weight=weights[te]))
    return {"folds": folds, "r2_mean": float(np.mean(r2)), "r2_std": float(np.std(r2)),
            "mae_mean": float(np.mean(mae)), "r2_per_fold": [round(float(v), 4) for v in r2]}


def plot_importances(models: list[FittedModel], path: Path, top: int = 10) -> None:
    """Bar charts of the `top` feature importances, one panel per model, saved to `path` (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        imp = m.importances(top)[::-1]
        ax.barh(range(len(imp)), imp.to_numpy(), color="#1f77b4")
        ax.set_yticks(range(len(imp)), [s[:45] for s in imp.index], fontsize=7)
        ax.set_xlabel("importance")
        target = "R_full" if m.kind == "global" else "R_onsite (Box-Cox)"
        ax.set_title(f"{m.kind} model -> {target}: test R2 {m.metrics['test_r2']:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)

"""Element and space-group trends (paper Fig. 3A-B)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SYSTEM_COLOURS = {"triclinic": "#8c564b", "monoclinic": "#e377c2", "orthorhombic": "#2ca02c",
                  "tetragonal": "#ff7f0e", "trigonal": "#9467bd", "hexagonal": "#17becf", "cubic": "#1f77b4"}


def element_means(sites: pd.DataFrame) -> pd.DataFrame:
    """Mean R_onsite over all sites of each element, with counts."""
    g = sites.groupby("element")["r_onsite"]
    return pd.DataFrame({"mean_r_onsite": g.mean(), "n_sites": g.size(),
                         "n_materials": sites.groupby("element")["material_id"].nunique()}).sort_values(
        "mean_r_onsite", ascending=False)


def spacegroup_means(materials: pd.DataFrame) -> pd.DataFrame:
    """Mean L2 shift per space group, with counts and crystal system."""
    g = materials.groupby("spacegroup_number")
    out = pd.DataFrame({"mean_l2_shift": g["l2_shift"].mean(), "n_materials": g.size(),
                        "crystal_system": g["crystal_system"].first(), "symbol": g["spacegroup"].first()})
    return out.sort_values("mean_l2_shift", ascending=False)


def plot_element_heatmap(sites: pd.DataFrame, path: Path) -> None:
    """Periodic table coloured by mean R_onsite (log scale), pymatgen's periodic_table_heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pymatgen.util.plotting import periodic_table_heatmap

    values = element_means(sites)["mean_r_onsite"].clip(lower=1e-4).to_dict()
    periodic_table_heatmap(values, cbar_label="mean R_onsite", log=True, cmap="viridis", show_plot=False, pymatviz=False,
                           value_format="%.2f", value_fontsize=7, cmap_range=(min(values.values()), max(values.values())))
    fig = plt.gcf()
    fig.set_size_inches(13, 7)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_spacegroup_bars(materials: pd.DataFrame, path: Path, min_count: int = 1) -> None:
    """Mean L2 shift per space group, bars coloured by crystal system, dashed line at the overall mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    sg = spacegroup_means(materials)
    sg = sg[sg["n_materials"] >= min_count].sort_index()
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(sg) + 2), 4))
    x = np.arange(len(sg))
    ax.bar(x, 100 * sg["mean_l2_shift"], color=[SYSTEM_COLOURS[c] for c in sg["crystal_system"]])
    ax.axhline(100 * materials["l2_shift"].mean(), color="k", ls="--", lw=1, label="mean")
    ax.set_xticks(x, [str(n) for n in sg.index], rotation=90, fontsize=7)
    ax.set_xlabel("space group")
    ax.set_ylabel("mean L2 frequency shift (%)")
    present = [s for s in SYSTEM_COLOURS if s in set(sg["crystal_system"])]
    ax.legend(handles=[Patch(color=SYSTEM_COLOURS[s], label=s) for s in present]
              + [plt.Line2D([], [], color="k", ls="--", label="overall mean")], fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)

"""`qsched plot`: a quick look at a run's data, tolerant of what the file holds.

- x axis: the dataset named by the root attribute `x` / `x_dataset`, else `xpts`, else the first
  1-D dataset whose name looks like a sweep (freqs, times, gains, ...), else the sample index.
- y: `avgi`/`avgq` (one panel each), else `amps`/`phases`, else every other 1-D dataset with x's length.
  A 2-D dataset (a sweep of sweeps) is drawn as an image instead.
- units and labels: the dataset's `units`/`unit` and `long_name`/`label` attributes, else a default
  from the name; "(a.u.)" when nothing is known. Axes are always labelled with a unit.
- fit: a dataset `fit_<y>` or `<y>_fit` is overlaid as a dashed line on the panel of `<y>`
  (`fit` alone goes on the first panel); scalar `fit_*` root attributes are listed in the legend.

matplotlib is imported here only (`pip install 'qsched[plot]'`), with the Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

X_NAMES = (
    "xpts",
    "x",
    "freqs",
    "freq",
    "frequencies",
    "times",
    "time",
    "delays",
    "gains",
    "amps_sweep",
    "lengths",
)
# The fitted signal first when the file has one (its fit is overlaid), then the raw I and Q.
Y_PREFERRED = (("signal", "avgi", "avgq"), ("avgi", "avgq"), ("amps", "phases"), ("i", "q"))
DEFAULT_UNITS = {
    "avgi": ("I", "ADC units"),
    "avgq": ("Q", "ADC units"),
    "amps": ("amplitude", "ADC units"),
    "phases": ("phase", "rad"),
    "freqs": ("frequency", "MHz"),
    "times": ("time", "µs"),
    "delays": ("delay", "µs"),
    "gains": ("gain", "DAC units"),
    "lengths": ("length", "µs"),
}


def _label(run: Any, name: str) -> str:
    attrs = run.dataset_attrs.get(name, {})
    default_label, default_unit = DEFAULT_UNITS.get(name.split("/")[-1].lower(), (name, "a.u."))
    label = attrs.get("long_name") or attrs.get("label") or default_label
    unit = attrs.get("units") or attrs.get("unit") or run.attrs.get(f"{name}_units") or default_unit
    return f"{label} ({unit})"


def _is_fit(name: str) -> bool:
    base = name.split("/")[-1].lower()
    return base.startswith("fit") or base.endswith("_fit")


def _pick_x(run: Any) -> str | None:
    for key in ("x", "x_dataset", "x_name"):
        name = run.attrs.get(key)
        if isinstance(name, str) and name in run.arrays:
            return name
    lower = {n.split("/")[-1].lower(): n for n, a in run.arrays.items() if getattr(a, "ndim", 0) == 1}
    for candidate in X_NAMES:
        if candidate in lower:
            return lower[candidate]
    return None


def _fit_for(run: Any, y: str) -> str | None:
    for name in (f"fit_{y}", f"{y}_fit"):
        if name in run.arrays:
            return name
    return None


def plot_run(run: Any, output: str | Path, title: str = "") -> Path:
    """Draw `run` (a qsched.data.RunData) to `output`; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arrays = {k: np.asarray(v) for k, v in run.arrays.items() if np.asarray(v).dtype.kind in "biufc"}
    x_name = _pick_x(run)
    x = arrays.get(x_name) if x_name else None
    two_d = [n for n, a in arrays.items() if a.ndim == 2 and not _is_fit(n)]
    one_d = {n: a for n, a in arrays.items() if a.ndim == 1 and n != x_name and not _is_fit(n)}
    if x is not None:
        one_d = {n: a for n, a in one_d.items() if len(a) == len(x)}
    ys: list[str] = []
    for group in Y_PREFERRED:
        found = [n for n in one_d if n.split("/")[-1].lower() in group]
        if found:
            ys = sorted(found, key=lambda n: group.index(n.split("/")[-1].lower()))
            break
    if not ys:
        ys = list(one_d)[:4]
    fit_values = {
        k: v for k, v in run.attrs.items() if k.lower().startswith("fit") and isinstance(v, int | float)
    }
    if not ys and not two_d:
        raise ValueError(
            f"{run.path.name}: no numeric dataset to plot (datasets: {', '.join(run.arrays) or 'none'})"
        )

    if ys:
        fig, axes = plt.subplots(len(ys), 1, sharex=True, figsize=(7, 2.6 * len(ys) + 0.8), squeeze=False)
        xs = x if x is not None else np.arange(len(one_d[ys[0]]))
        x_label = _label(run, x_name) if x_name else "sample index (count)"
        generic_fit = "fit" if "fit" in arrays and arrays["fit"].ndim == 1 else None
        for i, (ax, name) in enumerate(zip(axes[:, 0], ys, strict=True)):
            y = one_d[name]
            ax.plot(xs, y.real if np.iscomplexobj(y) else y, "o-", ms=3, lw=1, label="data")
            fit = _fit_for(run, name) or (generic_fit if i == 0 else None)
            if fit is not None and len(arrays[fit]) == len(xs):
                ax.plot(xs, arrays[fit], "--", lw=1.5, color="C3", label="fit")
            ax.set_ylabel(_label(run, name))
            if fit is not None or (i == 0 and fit_values):
                if i == 0 and fit_values:
                    text = ", ".join(f"{k} = {v:.4g}" for k, v in sorted(fit_values.items()))
                    ax.plot([], [], " ", label=text)
                ax.legend(loc="best", fontsize="small")
        axes[-1, 0].set_xlabel(x_label)
    else:
        name = two_d[0]
        fig, ax = plt.subplots(figsize=(7, 5))
        image = ax.imshow(arrays[name], aspect="auto", origin="lower", interpolation="nearest")
        fig.colorbar(image, ax=ax, label=_label(run, name))
        ax.set_xlabel(_label(run, x_name) if x_name else "column index (count)")
        ax.set_ylabel("row index (count)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(output)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

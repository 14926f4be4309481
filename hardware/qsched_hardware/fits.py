"""Fits used by the built-in experiments (scipy least squares with data-driven first guesses).
Each returns its parameters with their errors, and `curve`: the model at the data's x values."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit


class FitError(RuntimeError):
    """The data did not support a fit."""


def project_iq(i: np.ndarray, q: np.ndarray) -> np.ndarray:
    """IQ points -> their coordinate along the principal axis (the |g>-|e> line)."""
    z = np.asarray(i, float) + 1j * np.asarray(q, float)
    centred = z - z.mean()
    pts = np.stack([centred.real, centred.imag])
    cov = pts @ pts.T
    w, v = np.linalg.eigh(cov)
    axis = v[:, int(np.argmax(w))]
    return axis[0] * centred.real + axis[1] * centred.imag


def _dominant_period(x: np.ndarray, y: np.ndarray) -> float:
    y = y - y.mean()
    n = len(x) * 8
    spec = np.abs(np.fft.rfft(y, n))
    freqs = np.fft.rfftfreq(n, d=(x[1] - x[0]))
    k = int(np.argmax(spec[1:]) + 1)
    return 1.0 / freqs[k] if freqs[k] > 0 else (x[-1] - x[0])


def _fit(f, x, y, p0, **kw):
    """curve_fit for models whose first two parameters are an offset and an amplitude. y is
    mapped to [1, 2] first, so no parameter starts near zero (finite-difference steps are
    relative) and the fit does not depend on the data's units."""
    y = np.asarray(y, float)
    lo = float(y.min())
    span = float(y.max() - lo) or 1.0
    yn = (y - lo) / span + 1.0
    pn = [(p0[0] - lo) / span + 1.0, p0[1] / span, *p0[2:]]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, pcov = curve_fit(f, x, yn, p0=pn, maxfev=5000, **kw)
    except (RuntimeError, ValueError) as exc:
        raise FitError(str(exc)) from exc
    perr = np.sqrt(np.abs(np.diag(pcov))) if np.all(np.isfinite(pcov)) else np.full(len(popt), np.inf)
    popt = np.array([(popt[0] - 1.0) * span + lo, popt[1] * span, *popt[2:]])
    perr = np.array([perr[0] * span, perr[1] * span, *perr[2:]])
    return popt, perr


def fit_rabi(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """y = c + a*cos(pi*x/x_pi): x_pi is the pi amplitude (or pi length)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    period = _dominant_period(x, y)

    def model(x, c, a, x_pi):
        return c + a * np.cos(np.pi * x / x_pi)

    best = None
    for guess in (period / 2, period / 3, period / 4, period * 0.75, period):
        a0 = y[0] - y.mean()
        try:
            popt, perr = _fit(model, x, y, [y.mean(), a0 or (y.max() - y.min()) / 2, guess])
        except FitError:
            continue
        resid = float(np.sum((model(x, *popt) - y) ** 2))
        if popt[2] > 0 and (best is None or resid < best[0]):
            best = (resid, popt, perr)
    if best is None:
        raise FitError("Rabi fit did not converge")
    _, popt, perr = best
    return {
        "offset": popt[0],
        "amplitude": popt[1],
        "x_pi": abs(popt[2]),
        "x_pi_err": perr[2],
        "curve": model(x, *popt),
    }


def fit_exp_decay(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """y = c + a*exp(-x/tau)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)

    def model(x, c, a, tau):
        return c + a * np.exp(-x / tau)

    tau0 = (x[-1] - x[0]) / 3 or 1.0
    popt, perr = _fit(model, x, y, [y[-1], y[0] - y[-1], tau0])
    return {
        "offset": popt[0],
        "amplitude": popt[1],
        "tau": abs(popt[2]),
        "tau_err": perr[2],
        "curve": model(x, *popt),
    }


def fit_decaying_cos(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """y = c + a*exp(-x/tau)*cos(2*pi*f*x + phi)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    period = _dominant_period(x, y)

    def model(x, c, a, tau, f, phi):
        return c + a * np.exp(-x / tau) * np.cos(2 * np.pi * f * x + phi)

    best = None
    for phi0 in (0.0, math.pi / 2, math.pi, -math.pi / 2):
        p0 = [y.mean(), (y.max() - y.min()) / 2, (x[-1] - x[0]) / 2 or 1.0, 1.0 / period, phi0]
        try:
            popt, perr = _fit(model, x, y, p0)
        except FitError:
            continue
        resid = float(np.sum((model(x, *popt) - y) ** 2))
        if best is None or resid < best[0]:
            best = (resid, popt, perr)
    if best is None:
        raise FitError("decaying-cosine fit did not converge")
    _, popt, perr = best
    return {
        "offset": popt[0],
        "amplitude": popt[1],
        "tau": abs(popt[2]),
        "tau_err": perr[2],
        "freq": abs(popt[3]),
        "freq_err": perr[3],
        "curve": model(x, *popt),
    }


def fit_lorentzian(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """y = c + a / (1 + ((x - x0) / (w/2))^2): a peak (a > 0) or a dip (a < 0)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    base = float(np.median(y))
    k = int(np.argmax(np.abs(y - base)))
    a0 = y[k] - base
    half = np.abs(y - base) > abs(a0) / 2
    w0 = max(float(np.sum(half)) * abs(x[1] - x[0]), abs(x[1] - x[0]) * 2)

    def model(x, c, a, x0, w):
        return c + a / (1 + ((x - x0) / (w / 2)) ** 2)

    popt, perr = _fit(model, x, y, [base, a0, x[k], w0])
    return {
        "offset": popt[0],
        "amplitude": popt[1],
        "x0": popt[2],
        "x0_err": perr[2],
        "fwhm": abs(popt[3]),
        "curve": model(x, *popt),
    }

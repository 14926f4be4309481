"""Imported once by the simulation forkserver (simulation.py): loads qiskit, Aer and the transpiler's
stage plugins, so each forked worker starts warm instead of paying seconds. Nothing here may start a
thread pool (no simulation, no transpilation): OpenMP and rayon pools do not survive a fork."""

from __future__ import annotations

import warnings

import qiskit_aer
from qiskit.transpiler.preset_passmanagers.plugin import PassManagerStagePluginManager

from qsched_benchmarks.devices import fake_backend

PassManagerStagePluginManager()
qiskit_aer.AerSimulator()
with warnings.catch_warnings():  # the fake provider warns about some snapshots on every load
    warnings.simplefilter("ignore")
    fake_backend("fake_manila")  # imports the fake provider's modules

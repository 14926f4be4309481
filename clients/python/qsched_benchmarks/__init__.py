"""metriq-gym benchmarks, in one library the provider gateway and the SDK both use (so the SDK
never imports a service): config validation (a JSON Schema per benchmark, unknown keys
rejected), circuit building and scoring with metriq-gym's metric definitions, suites
(`registry`), the device a benchmark is built for and the local simulators' devices
(`devices`), circuit resource counts (`estimate`) and the export record (`export`).

Importing the package is cheap; `registry` and the benchmark modules need numpy (and qiskit
when they build circuits), the `local` extra."""

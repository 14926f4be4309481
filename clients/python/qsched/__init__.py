"""qsched: the Python SDK and CLI for the qsched job scheduler.

The generated gRPC API lives under `qsched.api` (e.g. `qsched.api.jobs.v1.jobs_pb2`)."""

__version__ = "0.1.0"

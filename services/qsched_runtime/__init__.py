"""The gRPC floor every qsched server stands on: server bootstrap, health, reflection, the
authentication and tracing interceptors, domain errors as google.rpc.Status, and the
server-side security (authenticator, TLS). Below it is `qsched_core` (no gRPC); above it the
services and `qsched_ops`."""

"""The live web view of qsched (`qsched serve web`, started by `qsched up`): a client of the public
gRPC API that acts with each viewer's own token (docs/web.md). It imports the SDK, never a service."""

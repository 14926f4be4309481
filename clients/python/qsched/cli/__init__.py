"""The `qsched` command line: thin over the generated API, quick to start."""

"""qsched benchmark harness (issue 8): `make bench`, see bench/README.md."""

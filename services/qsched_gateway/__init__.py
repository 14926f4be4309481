"""Provider gateway: circuits and benchmark suites to cloud QPUs and local simulators."""

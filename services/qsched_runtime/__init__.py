"""What every qsched server shares: server bootstrap, health, reflection, tracing,
rich errors, typed configuration and the `qsched up` supervisor."""

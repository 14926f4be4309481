"""Hardware executor: the sole owner of the QICK board."""

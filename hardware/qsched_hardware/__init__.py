"""Everything that knows about QICK boards: drivers, the simulated SoC, experiments."""

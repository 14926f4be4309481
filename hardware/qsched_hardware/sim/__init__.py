"""A simulated QICK board: a QickConfig that implements the SoC calls qick's acquire() makes
and answers them from a physics model of a transmon and its readout resonator."""

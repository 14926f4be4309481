"""An example lab plug-in package for the qsched hardware executor (see docs/experiments.md).

Allow-list it with `--experiment-package qsched_lab_example`; submit with
experiment_module="qsched_lab_example.pulse_train", experiment_class="PulseTrainExperiment"."""

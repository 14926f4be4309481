"""Calibration the scheduler owns (issue 14, docs/calibration.md).

- definitions.py: the calibration definitions (the `calibrations` config type's YAML): experiment,
  settings, which hardware-config keys the fit updates, freshness, dependencies, acceptance check
- state.py: what is known of each calibration on each device (last run, fresh until, failures),
  and the narrow store it lives in (memory here, SQL in sql_store.py)
- configs_port.py: what calibration needs from the config service (read the definitions, push a
  fit's updates as a new main revision as the calibrator service principal)
- manager.py: runs the chains: queues recalibration jobs (dependencies first, shared by every
  waiting job), checks a finished run, pushes or marks it failed, releases the waiting jobs
- gate.py: the queue-policy gate that holds a lab job back while a calibration it needs is stale"""

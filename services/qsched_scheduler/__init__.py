"""The scheduler service: one durable queue per device, dispatch, and job event streams."""

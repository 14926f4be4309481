"""Migration scripts of the config database, oldest first."""

"""Config-versioning service: immutable SHA-256-addressed revisions and a main pointer per type."""

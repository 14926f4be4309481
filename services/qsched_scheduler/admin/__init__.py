"""qsched.admin.v1.AdminService: the identity library's users, tokens and audit log, served by the
scheduler (the one service people manage the installation through)."""

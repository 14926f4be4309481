"""Who is calling: users, service principals, their roles, bearer tokens (stored as
SHA-256 hashes) and the audit log of privileged actions. Every qsched service reads
this database to authenticate calls; the scheduler hosts qsched.admin.v1.AdminService
to manage it, and `qsched up` / `qsched admin init` provision it locally."""

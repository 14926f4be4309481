"""Who is calling: users, service principals, their roles, bearer tokens (stored as SHA-256
hashes) and the audit log of privileged actions, in one database every service reads.

A library on floor 1: it imports only `qsched_core` (no gRPC). Every service authenticates
calls through it (`qsched_runtime.security` builds the Authenticator); the scheduler serves
qsched.admin.v1.AdminService over it (`qsched_scheduler.admin`); `qsched_ops.provision`
provisions it locally for `qsched up` and `qsched admin init`."""

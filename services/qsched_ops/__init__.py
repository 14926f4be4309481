"""Operations, the top floor: `qsched up` (the supervisor), `qsched serve`, the server flags,
`qsched db` and `qsched admin init` (provisioning users and tokens on this machine).

The CLI (`qsched.cli`, part of the SDK) imports no service: it finds these verbs through the
`qsched.cli_commands` entry point group (`qsched_ops.cli`), and only when one is asked for."""

"""`qsched admin`, `qsched login`, `qsched whoami` and `qsched device` against a real scheduler."""

from __future__ import annotations

import asyncio
import io
import sys

import pytest

from qsched.cli.main import main


@pytest.fixture
def qsched(scheduler, capsys, monkeypatch, tmp_path):
    address = scheduler[2]
    monkeypatch.setenv("QSCHED_CONFIG_DIR", str(tmp_path / "config"))  # nobody's token yet

    async def run(*args: str, token: str = "", stdin: str = "") -> tuple[int, str, str]:
        capsys.readouterr()
        if token:
            monkeypatch.setenv("QSCHED_TOKEN", token)
        else:
            monkeypatch.delenv("QSCHED_TOKEN", raising=False)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = await asyncio.to_thread(main, [*args, "--address", address])
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def test_admin_login_whoami_device_and_audit(qsched, identity):
    admin = identity.token
    code, _, err = await qsched("whoami")
    assert code == 2 and err.count("\n") == 1 and "MISSING_TOKEN" in err

    code, out, _ = await qsched("admin", "user", "add", "zed", "--role", "operator", token=admin)
    assert code == 0 and "Added user zed (roles: operator)" in out
    code, secret, err = await qsched("admin", "user", "token", "zed", "--label", "laptop", token=admin)
    assert code == 0 and secret.strip().startswith("qsched_") and "shown once" in err

    code, out, _ = await qsched("login", stdin=secret)
    assert code == 0 and "Logged in as zed" in out
    code, out, _ = await qsched("whoami")  # from the saved file now
    assert code == 0 and out.startswith("zed (user; roles: operator;")

    code, out, _ = await qsched("device", "pause", "qick", "--reason", "fridge warm-up")
    assert code == 0 and "paused" in out and "held by zed" in out and "fridge warm-up" in out
    code, out, _ = await qsched("device", "list")
    assert code == 0 and "qick" in out and "paused" in out
    code, out, _ = await qsched("device", "resume", "qick")
    assert code == 0 and " open " in out

    code, _, err = await qsched("admin", "user", "list")  # zed is no admin
    assert code == 2 and "lacks the admin role" in err
    code, out, _ = await qsched("admin", "audit", "--actor", "zed", token=admin)
    assert code == 0 and "device.pause" in out and "device.resume" in out

    code, out, _ = await qsched("admin", "user", "revoke", "zed", token=admin)
    assert code == 0 and "Revoked 1 token(s) of zed" in out
    code, _, err = await qsched("whoami")
    assert code == 2 and "TOKEN_REVOKED" in err and err.count("\n") == 1

    code, _, err = await qsched("login", stdin="qsched_forged-token-0000000000000000000")
    assert code == 2 and "INVALID_TOKEN" in err

"""How the SDK and the CLI prove who they are: a bearer token, and TLS when the
scheduler is not on loopback.

Token, first found wins: the `token=` argument, $QSCHED_TOKEN, the file named by
$QSCHED_TOKEN_FILE, then `<config dir>/token`, where the config dir is $QSCHED_CONFIG_DIR,
else $XDG_CONFIG_HOME/qsched, else ~/.config/qsched. `qsched up` writes that file (mode
0600, in a 0700 directory) for the OS user who starts the stack; other users get a token
from an admin (`qsched admin user token NAME`) and save it with `qsched login`.

TLS, from the environment: $QSCHED_TLS_CA (PEM of the CA that signed the servers'
certificates; setting it switches the channel to TLS), and for mutual TLS
$QSCHED_TLS_CERT / $QSCHED_TLS_KEY (the client's certificate and key). The channels that carry
both are built by `qsched.wire`."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from qsched.wire import Tls

TOKEN_FILE_NAME = "token"


def config_dir() -> Path:
    explicit = os.environ.get("QSCHED_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "qsched"


def token_file() -> Path:
    explicit = os.environ.get("QSCHED_TOKEN_FILE")
    return Path(explicit).expanduser() if explicit else config_dir() / TOKEN_FILE_NAME


def find_token(explicit: str | None = None) -> str:
    """The caller's bearer token, or "" when none is configured (the server then says how to get one)."""
    if explicit:
        return explicit.strip()
    env = os.environ.get("QSCHED_TOKEN", "").strip()
    if env:
        return env
    path = token_file()
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
    except PermissionError as exc:
        raise PermissionError(f"cannot read the qsched token file {path}: {exc.strerror}") from None


def save_token(token: str, path: Path | None = None) -> Path:
    """Write `token` readable by this OS user only (directory 0700, file 0600), atomically."""
    path = path or token_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # a shared parent (e.g. $QSCHED_TOKEN_FILE in /tmp) is not ours
        if path.parent.name == "qsched":
            path.parent.chmod(0o700)
    import tempfile  # only here: every CLI call imports this module

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".token-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(token.strip() + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def tls_from_env() -> Tls | None:
    """TLS settings from $QSCHED_TLS_CA (setting it switches channels to TLS) and, for mutual TLS,
    $QSCHED_TLS_CERT / $QSCHED_TLS_KEY; None for a plaintext channel."""
    ca = os.environ.get("QSCHED_TLS_CA", "")
    if not ca:
        return None
    return Tls(ca, os.environ.get("QSCHED_TLS_CERT", ""), os.environ.get("QSCHED_TLS_KEY", ""))

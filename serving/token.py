"""The bearer token of the deletion endpoints: `$UNLEARN_TOKEN`, else `$UNLEARN_HOME/token`,
created on first use with 0600 permissions. Replicas only ever see its SHA-256."""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

from pipeline.errors import UserError

TOKEN_FILE = "token"


def resolve_token(home: Path) -> str:
    env = os.environ.get("UNLEARN_TOKEN")
    if env is not None:
        if len(env.strip()) < 16:
            raise UserError("UNLEARN_TOKEN is shorter than 16 characters: use a long random token")
        return env.strip()
    path = Path(home) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL + mode: the file never exists with looser permissions, not even for a moment
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise UserError(f"{path} is readable by others (mode {mode:o}): run `chmod 600 {path}`") from None
    token = path.read_text().strip()
    if len(token) < 16:
        raise UserError(f"{path} holds a token shorter than 16 characters")
    return token


def existing_token(home: Path) -> str | None:
    """The token if one is set (`$UNLEARN_TOKEN`) or was created (the file); never creates one.

    For callers that only *use* the token (the nightly's refresh call): minting a new file
    there would leave the running server with the old hash and every call a silent 401."""
    if os.environ.get("UNLEARN_TOKEN") is not None or (Path(home) / TOKEN_FILE).exists():
        return resolve_token(home)
    return None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

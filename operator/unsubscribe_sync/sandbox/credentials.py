"""A connected app's credentials for the sandbox, and writing them as a mounted Secret would look."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

GRANTS = ("client_credentials", "jwt")


@dataclass(frozen=True)
class SandboxCredentials:
    client_id: str
    client_secret: str
    jwt_username: str
    jwt_private_key_pem: str  # PKCS#8 PEM; its public half is registered for client_id
    jwt_public_key_pem: str

    def write(self, directory: Path, grant: str = "client_credentials") -> Path:
        """One file per Secret key: `client_id` + `client_secret`, or (grant="jwt") `client_id` + `username` +
        `private_key`. Files are mode 0600. Returns the directory."""
        if grant not in GRANTS:
            raise ValueError(f"grant must be one of {', '.join(GRANTS)}, got {grant!r}")
        directory.mkdir(parents=True, exist_ok=True)
        files = {"client_id": self.client_id}
        if grant == "client_credentials":
            files["client_secret"] = self.client_secret
        else:
            files["username"] = self.jwt_username
            files["private_key"] = self.jwt_private_key_pem
        for name, value in files.items():
            path = directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)
        return directory


def generate_credentials(username: str = "integration@sandbox.example") -> SandboxCredentials:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return SandboxCredentials(
        client_id="3MVG9" + secrets.token_urlsafe(60).replace("-", "A").replace("_", "B")[:80],
        client_secret=secrets.token_hex(32).upper(),
        jwt_username=username,
        jwt_private_key_pem=private_pem,
        jwt_public_key_pem=public_pem,
    )

"""Secrets at rest (Fernet / MultiFernet), generated secrets and hashed hook passwords."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from webhook.logs import register_secret


class SecretBox:
    """Encrypts secrets with the newest key and decrypts with any configured key."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        """Encrypt a secret for storage."""
        register_secret(plaintext)
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Decrypt a stored secret; raises ValueError when no configured key fits."""
        try:
            plaintext = self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("stored secret cannot be decrypted with WEBHOOK_SECRET_KEY") from None
        register_secret(plaintext)
        return plaintext

    def rotate(self, token: str) -> str:
        """Re-encrypt a stored secret with the newest key."""
        return self._fernet.rotate(token.encode()).decode()


def new_source_secret() -> str:
    """A Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    register_secret(secret)
    return secret


def new_hook_password() -> str:
    """A random password for an Azure DevOps subscription's basic auth."""
    password = secrets.token_urlsafe(32)
    register_secret(password)
    return password


def hash_password(password: str) -> str:
    """Hash a high-entropy generated password (SHA-256 suffices: it is not user-chosen)."""
    return "sha256$" + hashlib.sha256(password.encode()).hexdigest()


def verify_password(password: str, stored_hash: str) -> bool:
    """Compare a presented password with its stored hash in constant time."""
    return hmac.compare_digest(hash_password(password), stored_hash)


def tokens_equal(presented: str, expected: str) -> bool:
    """Constant-time comparison of two tokens of any length."""
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )

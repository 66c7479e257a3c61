"""The collaborators a request or job needs, built once per process from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from webhook.crypto import SecretBox
from webhook.settings import Settings
from webhook.storage import open_storage
from webhook.store import Store


@dataclass
class Services:
    settings: Settings
    store: Store

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Wire the store over the configured database."""
        box = SecretBox(settings.secret_keys)
        store = open_storage(
            settings.db_path, box, content_sync_seconds=settings.content_sync_seconds
        )
        return cls(settings=settings, store=store)


def get_services() -> Services:
    """The Services of the running Flask app."""
    return current_app.extensions["adowh"]  # type: ignore[no-any-return]

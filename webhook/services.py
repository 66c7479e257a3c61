"""The composition root: the collaborators a request or a job needs, built once per process.

:meth:`Services.from_settings` is the one place that builds the long-lived objects from
:class:`~webhook.settings.Settings`: the storage, the Azure DevOps gateway (one per process, so
its per-thread clients and their connection pools are kept across requests and jobs), the
service-hook subscriptions, the callback sender, the job handlers, the clock, the secret
registry and the metrics. :func:`webhook.composition.create_app` stores them on
``app.extensions["adowh"]`` (blueprints read them with :func:`get_services`) and
:func:`webhook.composition.run_worker` hands them to the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app

from webhook import clock, logs
from webhook.callbacks import CallbackSender
from webhook.clock import Clock
from webhook.crypto import SecretBox
from webhook.gateway import AdoGateway
from webhook.metrics import Metrics, process_metrics
from webhook.settings import Settings
from webhook.storage import open_storage
from webhook.storage.interfaces import Storage
from webhook.subscriptions import Subscriptions
from webhook.sync import SyncHandlers

# Scrubs a secret from every log line from now on (webhook.logs.register_secret).
SecretRegistry = Callable[[str | None], None]


@dataclass
class Services:
    """Everything built from Settings, shared by the HTTP app and the worker of a process."""

    settings: Settings
    store: Storage
    gateway: AdoGateway
    subscriptions: Subscriptions
    callbacks: CallbackSender
    sync: SyncHandlers
    clock: Clock
    secrets: SecretRegistry
    metrics: Metrics

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Wire every service over the configured database (does not migrate it).

        Registers the admin token and the secret keys with the log scrubber and creates this
        process's metrics (once; later calls reuse them).
        """
        secrets: SecretRegistry = logs.register_secret
        secrets(settings.admin_token)
        for key in settings.secret_keys:
            secrets(key)
        box = SecretBox(settings.secret_keys)
        store = open_storage(
            settings.storage_location, box, content_sync_seconds=settings.content_sync_seconds
        )
        gateway = AdoGateway(settings, store)
        callbacks = CallbackSender(store)
        return cls(
            settings=settings,
            store=store,
            gateway=gateway,
            subscriptions=Subscriptions(store, gateway, settings.public_url),
            callbacks=callbacks,
            sync=SyncHandlers(store, gateway, callbacks),
            clock=clock.current(),
            secrets=secrets,
            metrics=process_metrics(),
        )


def get_services() -> Services:
    """The Services of the running Flask app."""
    return current_app.extensions["adowh"]  # type: ignore[no-any-return]

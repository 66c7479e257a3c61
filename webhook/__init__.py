"""ado-webhook: security findings and Azure DevOps work items, kept in sync both ways by push."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

from webhook.version import __version__

__all__ = ["__version__", "create_app"]


def create_app(settings: Any = None, services: Any = None) -> Flask:
    """gunicorn's ``webhook:create_app()``: see webhook.composition.create_app.

    The composition root is imported here, when the app is built, not when the package is:
    every ``import webhook.<module>`` runs this file, and the HTTP blueprints (and
    prometheus_client, which must see ``PROMETHEUS_MULTIPROC_DIR`` first) must not come with it.
    """
    from webhook import composition  # the composition root (see its docstring)

    return composition.create_app(settings, services)

"""Service hooks: register per project (as POST /admin/hooks does), with live status, heal count
and last error read like GET /admin/hooks."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from marshmallow import ValidationError
from werkzeug.wrappers import Response

from webhook.ado import AdoNotFound
from webhook.api.ado_errors import ado_errors
from webhook.errors import ApiError
from webhook.schemas import HookCreateSchema
from webhook.services import get_services
from webhook.storage.errors import Missing
from webhook.storage.types import HookRecord
from webhook.subscriptions import PublicUrlMissing, Subscriptions
from webhook.ui.core import as_id, bp, form_errors, page
from webhook.ui.work_item_templates import ado_choices


def _subscriptions() -> Subscriptions:
    return get_services().subscriptions


def _page(
    form: dict[str, str], errors: dict[str, list[str]], message: str | None, status: int
) -> Response:
    services = get_services()
    connections, _ = services.store.connections.list_connections(1, 1000)
    connection_id = as_id(form.get("connection_id"))
    hooks, _ = services.store.hooks.list_hooks(1, 1000)
    subs = _subscriptions()
    live: list[HookRecord] = []
    for hook in hooks:
        try:
            live.append(subs.live(services.store.hooks.get_hook(hook.id)))
        except Missing:
            continue
    names = {c.id: c.name for c in connections}
    return page(
        "hooks.html",
        status,
        active="ui.hooks",
        form=form,
        errors=errors,
        error=message,
        connections=connections,
        connection_names=names,
        choices=ado_choices(connection_id, "", ""),
        hooks=live,
        public_url=services.settings.public_url,
    )


@bp.get("/hooks")
def hooks() -> Response:
    """The registration form and every subscription with its status read from Azure DevOps now."""
    return _page(request.args.to_dict(), {}, None, 200)


@bp.get("/hooks/choices")
def hook_choices() -> Response:
    """htmx: the Connection and Project choices again, for the connection chosen."""
    form = request.args.to_dict()
    return page(
        "_hook_choices.html",
        form=form,
        errors={},
        connections=get_services().store.connections.list_connections(1, 1000)[0],
        choices=ado_choices(as_id(form.get("connection_id")), "", ""),
    )


@bp.post("/hooks")
def register_hooks() -> Response:
    """Register hooks: create (or repair) the project's subscriptions in Azure DevOps."""
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    body = {"connection_id": as_id(form.get("connection_id")), "project": form.get("project", "")}
    try:
        data = HookCreateSchema().load({k: v for k, v in body.items() if v not in (None, "")})
    except ValidationError as exc:
        errors = form_errors(exc, {})
        return _page(form, errors, "Choose a connection and a project.", 422)
    try:
        get_services().store.connections.get_connection(data["connection_id"])
        with ado_errors():
            try:
                setup = _subscriptions().ensure(data["connection_id"], data["project"])
            except AdoNotFound as exc:
                return _page(
                    form,
                    {"project": [exc.message]},
                    f"Project {data['project']!r} was not found: {exc.message}",
                    422,
                )
    except Missing as exc:
        return _page(form, {"connection_id": [str(exc)]}, str(exc), 422)
    except PublicUrlMissing:
        return _page(
            form,
            {},
            "WEBHOOK_PUBLIC_URL is not set: Azure DevOps needs the public base URL of this "
            "service to deliver events. Set it and restart the service.",
            409,
        )
    except ApiError as exc:
        return _page(form, {}, exc.message, exc.status)
    verb = "Registered" if setup.created_any else "Checked; nothing to create for"
    flash(f"{verb} {len(setup.hooks)} subscription(s) for {data['project']}.")
    return redirect(url_for("ui.hooks"), code=303)

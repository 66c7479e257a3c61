"""The baseline: a bare Flask hello-world under the very same gunicorn settings as the service."""

from __future__ import annotations

import sys

from flask import Flask, request


def create_hello() -> Flask:
    app = Flask("hello")

    @app.route("/", methods=["GET", "POST"])
    def hello() -> str:
        request.get_data()
        return "hello"

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


if __name__ == "__main__":
    from webhook.gunicorn_app import GunicornApp

    GunicornApp(bind=sys.argv[1], workers=int(sys.argv[2]), loader=create_hello).run()

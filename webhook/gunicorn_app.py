"""Run gunicorn in-process on the app factory with our settings and hooks."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from webhook import logs, metrics

# `serve` starts the worker child with subprocess from a thread of gunicorn's master while the
# master forks web workers. A web worker forked while subprocess is between creating its
# exec-status pipe and the child's exec inherits the pipe's write end, and subprocess then
# waits for EOF as long as that web worker lives: no sync worker, ever. Both hold this lock.
FORK_LOCK = threading.Lock()


# CPython hands the GIL to a waiting thread only every 5 ms by default. A request thread coming
# back from fsync or the writers' lock then waits up to that long per step while a sibling
# thread computes; at 0.5 ms the receiver's p99 under load fell from ~10-20 ms to ~4-8 ms.
SWITCH_INTERVAL_SECONDS = 0.0005


def tune_thread_switching() -> None:
    """Shorten the GIL switch interval of this (forked) process; see SWITCH_INTERVAL_SECONDS."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


class _SerializedForkArbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's arbiter, forking web workers only while no subprocess is being started."""

    def spawn_worker(self) -> Any:
        with FORK_LOCK:
            return super().spawn_worker()


def default_workers(web_concurrency: int | None = None) -> int:
    """Settings.web_concurrency (WEB_CONCURRENCY), else 2*CPU+1 (gunicorn's rule of thumb)."""
    return web_concurrency or multiprocessing.cpu_count() * 2 + 1


class GunicornApp(BaseApplication):  # type: ignore[misc]
    """gunicorn with the options of deploy/gunicorn.conf.py, built in code."""

    def __init__(
        self,
        *,
        bind: str,
        workers: int | None,
        on_ready: Callable[[], None] | None = None,
        on_exit: Callable[[], None] | None = None,
        extra: dict[str, Any] | None = None,
        loader: Callable[[], Any],
    ) -> None:
        self.options: dict[str, Any] = {
            "bind": bind,
            "workers": workers or default_workers(),
            "worker_class": "gthread",
            "threads": 4,
            "timeout": 30,
            "graceful_timeout": 30,
            "keepalive": 5,
            "accesslog": "-",
            "errorlog": "-",
            "proc_name": "ado-webhook",
            **(extra or {}),
        }
        self._loader = loader
        self._on_ready = on_ready
        self._on_exit = on_exit
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("logconfig_dict", logs.gunicorn_logconfig_dict())
        self.cfg.set("access_log_format", logs.GUNICORN_ACCESS_LOG_FORMAT)
        # gunicorn 24+ opens a control socket at one fixed path per user, shared by every serve
        # on the machine; nothing here uses it.
        self.cfg.set("control_socket_disable", True)
        self.cfg.set("child_exit", metrics.child_exit)
        if self._on_ready:
            on_ready = self._on_ready
            self.cfg.set("when_ready", lambda server: on_ready())
        if self._on_exit:
            on_exit = self._on_exit
            self.cfg.set("on_exit", lambda server: on_exit())

    def run(self) -> None:
        try:
            _SerializedForkArbiter(self).run()
        except RuntimeError as exc:  # as BaseApplication.run: gunicorn's own start-up errors
            print(f"\nError: {exc}\n", file=sys.stderr, flush=True)
            sys.exit(1)

    def load(self) -> Any:
        tune_thread_switching()
        return self._loader()

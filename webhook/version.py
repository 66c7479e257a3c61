"""The service's version (a leaf module: importing it loads nothing else of the app)."""

from __future__ import annotations

__version__ = "0.1.0"

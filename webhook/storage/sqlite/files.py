"""The database's files: owner-only folders and files, and the schema text."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def ensure_private_dir(folder: Path) -> None:
    """Create `folder` and any missing parents owner-only (0700, whatever the umask).

    Folders that already exist are left as they are (the database may live in a shared one).
    Raises OSError when a folder cannot be created.
    """
    missing: list[Path] = []
    current = Path(folder)
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue
        os.chmod(path, PRIVATE_DIR)


def _create_private_file(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists (SQLite gives its WAL and SHM its mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def _make_private(path: Path) -> None:
    """Best effort: take group and other permissions off an existing file we own."""
    try:
        st = os.stat(path)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(path, st.st_mode & 0o700)
    except OSError:
        pass


def schema_sql() -> str:
    """Return schema.sql from the installed package, or from the checkout root."""
    packaged = resources.files("webhook").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[3] / "schema.sql"
    return checkout.read_text(encoding="utf-8")

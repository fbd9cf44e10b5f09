"""Writing files so that a reader in another process sees the old file, no file, or the whole
new one: never half of it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

from workbench.plumbing.errors import OutputError

Content = str | bytes | Callable[[IO[bytes]], object]


def write_atomic(path: Path, content: Content) -> Path:
    """Write text, bytes, or whatever `content(file)` writes, through a temporary file in the
    same folder (made if missing), then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, str):
                f.write(content.encode())
            elif isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def writable_folder(path: Path, what: str = "folder", create: bool = True) -> Path:
    """`path` as a folder this process can write in, checked by writing and removing a file
    there, so a run or a study is refused before any work rather than failing after it. A
    missing folder is made, or with create=False left unmade and its nearest existing parent
    checked instead. Raises OutputError naming the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder")
    probed = path
    if not create:
        while not probed.exists():
            probed = probed.parent
        if not probed.is_dir():
            raise OutputError(f"{what} {path} cannot be made: {probed} is a file, not a folder")
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=probed, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write in the {what} {path}: {e.strerror or e}") from None
    return path

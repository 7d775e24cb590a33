"""Atomic file writes: a reader never sees half a file, a crash never leaves one behind."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pixelwise.core.errors import FormatError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


_swept: set[str] = set()  # folders already cleaned by this process


def _process_umask() -> int:
    """The process umask, read without changing it where the OS tells it (Linux), else by setting it back at once."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; a finished file gets the mode a plain open() would have given it (0666 & ~umask).
FILE_MODE = 0o666 & ~_process_umask()


def _remove_stale_temps(folder: Path, host: str) -> None:
    """Once per folder and process: delete temp files left there by killed writers on this host.

    SIGKILL skips the cleanup in `atomic_write`; the next process that writes into the folder removes the leftovers
    of dead processes (a live writer's temp file is never touched).
    """
    key = str(folder.resolve())
    if key in _swept:
        return
    _swept.add(key)
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            parts = entry.name[: -len(".tmp")].rsplit(".", 3)
            if len(parts) != 4 or parts[1] != host or not parts[2].isdigit():
                continue
            pid = int(parts[2])
            if pid != os.getpid() and not _pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to `path`; on success fsync and rename it over `path`.

    Temp files are named `.<name>.<host>.<pid>.<random>.tmp`; those left by a killed process are removed by the next
    process that writes into the same folder on the same host.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace(".", "_")
    _remove_stale_temps(path.parent, host)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{host}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def parse_json(text: str | bytes, source: str, error: type[Exception] | None = None) -> object:
    """`json.loads`, with every way a hostile document fails it (bad syntax, nesting deep enough to exhaust the
    recursion limit, an integer of more digits than Python converts, undecodable bytes) raised as one typed error
    (`error`, default `FormatError`) whose message names `source`."""
    import json


    error = error or FormatError
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{source}: not valid JSON ({e})") from None
    except RecursionError:
        raise error(f"{source}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:  # e.g. "Exceeds the limit (4300 digits) for integer string ..."
        raise error(f"{source}: unreadable JSON ({e})") from None


def check_regular_file(path: str | Path, error: type[Exception], max_bytes: int) -> Path:
    """`path` if it is a regular file (after symlinks) of at most `max_bytes`; else `error` naming it. A FIFO, a
    device or a socket would block or never end a read: they are refused before any open()."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file (a folder, FIFO, device or socket)")
    if st.st_size > max_bytes:
        raise error(f"{path}: {st.st_size} bytes, over the limit of {max_bytes}")
    return path


def read_json(path: str | Path, error: type[Exception] | None = None, max_bytes: int = 64 << 20) -> object:
    """A JSON file through `parse_json`; a missing, unreadable, non-regular or oversize file is the same error."""

    error = error or FormatError
    path = check_regular_file(path, error, max_bytes)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_json(data, str(path), error)

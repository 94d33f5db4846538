"""What an IO failure of an index or cache means to the user: one line naming the reason (no
permission, a full disk, damaged files, an unreachable object store) and how to fix it."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from codesearch.config import is_remote
from codesearch.errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexMissingError,
    StorageError,
)
from codesearch.store.records import REBUILD_HINT

# LanceDB reports an OS failure inside its message: "LanceError(IO): No space left on device
# (os error 28), /root/.cargo/.../writer.rs:258:9". The errno decides what the user is told; the
# Rust source location means nothing to them.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_RUST_NOISE = re.compile(r",?\s*/\S+\.rs:\d+:\d+|lance error: |LanceError\(\w+\): ")
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READS = {"open", "read", "search"}


def storage_error(action: str, uri: str, err: BaseException,
                   what: str = "index") -> StorageError:
    """One line for an IO failure of ``action`` on the ``what`` at ``uri``: the OS reason and how
    to fix it when there is an errno; otherwise, for a local index, its files are damaged
    (IndexCorruptError on a read, since only a rebuild helps)."""
    text = str(err).strip()
    code = err.errno if isinstance(err, OSError) and err.errno else None
    if code is None and (match := _OS_ERROR.search(text)):
        code = int(match.group(1))
    where = f"cannot {action} the {what} at {uri}"
    if code in _NO_PERMISSION:
        reason = "read-only file system" if code == errno.EROFS else "permission denied"
        return StorageError(f"{where}: {reason}",
                            hint="make the directory writable by you, or pass --index-dir")
    if code in _NO_SPACE:
        fix = ("raise the file size limit (ulimit -f)" if code == errno.EFBIG
               else "free some disk space")
        return StorageError(f"{where}: {os.strerror(code).lower()}",
                            hint=f"{fix} and run it again; every batch committed before the "
                            "failure is kept")
    if code is not None:
        return StorageError(f"{where}: {os.strerror(code).lower()}",
                            hint="check the disk and the directory's permissions")
    first = _RUST_NOISE.sub("", text.splitlines()[0] if text else type(err).__name__).strip()
    if is_remote(uri):  # no errno from an object store: its own words (credentials, network...)
        return StorageError(f"{where}: {first[:200]}",
                            hint="check the store's address, credentials and network")
    if action in _READS:
        hint = (REBUILD_HINT if what == "index"
                else f"delete {uri} (it only saves time) and run it again")
        return IndexCorruptError(f"{where}: its files are damaged ({first[:160]})", hint=hint)
    return StorageError(f"{where}: {first[:200]}", hint="check free disk space and permissions")


@contextmanager
def storage_errors(action: str, uri: str, what: str = "index") -> Iterator[None]:
    """Turn OS and LanceDB IO failures into one StorageError line; other errors pass through."""
    try:
        yield
    except (IndexBusyError, IndexMismatchError, IndexMissingError, StorageError):
        raise
    except (OSError, RuntimeError) as err:  # lancedb raises both for IO errors of its Rust core
        raise storage_error(action, uri, err, what) from err

"""One writer per index: :class:`WriterLock` (an ``flock``) on a local index, and on S3
(:class:`S3WriterLock`) a lease object in the bucket, taken with a conditional PUT.

An object store has no ``flock``. LanceDB keeps each
table's own commits safe on S3 (a commit is a conditional PUT of the next manifest; a loser retries
or fails), but a cs run is many commits over three tables plus a read of the ``files`` table at the
start: two runs interleaving could each diff the tree against a state the other is changing. So cs
keeps the rule it has locally, one writer per index, with a lock object:

- acquire: ``PUT <index>/.cs-writer.lock`` with ``If-None-Match: *``; exactly one of several
  writers gets a 200, the others a 412 and an :class:`IndexBusyError` naming the holder.
- lease: the object says how long it is good for; a background thread rewrites it every third of
  the lease with ``If-Match: <our ETag>``, so a live writer keeps it forever.
- a writer killed without releasing leaves a lock that stops being renewed: once its age, measured
  by the server's clock (the response ``Date`` minus the object's ``Last-Modified``, so client
  clock skew does not matter), exceeds the lease, the next writer replaces it with ``If-Match`` on
  the stale ETag, so only one of several waiting writers can win the takeover.
- release: ``DELETE`` with ``If-Match`` on our ETag (never someone else's lock).

S3 has honoured conditional writes since August 2024; MinIO and moto do too. A store that ignores
``If-None-Match`` would let two writers in, and cannot host a shared index safely (Lance's own
commits rely on the same header there).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from codesearch.errors import IndexBusyError, StorageError
from codesearch.store.failures import storage_error

LOCK_NAME = ".cs-writer.lock"
DEFAULT_LEASE_S = 120.0
S3_SCHEMES = ("s3", "s3a", "s3+ddb")
BUSY_HINT = ("wait for it to finish; if its machine died, the lock expires {lease:.0f} s after "
             "its last renewal")

# lancedb storage option names (object_store's) -> boto3 client arguments.
_OPTION_TO_BOTO = {
    "aws_endpoint": "endpoint_url", "aws_endpoint_url": "endpoint_url", "endpoint": "endpoint_url",
    "endpoint_url": "endpoint_url",
    "aws_access_key_id": "aws_access_key_id", "access_key_id": "aws_access_key_id",
    "aws_secret_access_key": "aws_secret_access_key",
    "secret_access_key": "aws_secret_access_key",
    "aws_session_token": "aws_session_token", "session_token": "aws_session_token",
    "aws_region": "region_name", "region": "region_name",
}


def lease_seconds() -> float:
    """The lease of a remote writer lock: CS_LOCK_LEASE_S, else DEFAULT_LEASE_S."""
    try:
        return max(1.0, float(os.environ.get("CS_LOCK_LEASE_S", DEFAULT_LEASE_S)))
    except ValueError:
        return DEFAULT_LEASE_S


def boto_client_kwargs(storage_options: Mapping[str, str]) -> dict[str, str]:
    """boto3 client arguments from lancedb-style storage options; anything not given comes from
    the standard AWS environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_REGION, ...)."""
    out: dict[str, str] = {}
    for key, value in storage_options.items():
        target = _OPTION_TO_BOTO.get(key.lower())
        if target:
            out[target] = value
    return out


class S3WriterLock:
    """The writer lock of an index at ``s3://bucket/prefix`` (see the module doc)."""

    def __init__(self, uri: str, storage_options: Mapping[str, str] | None = None, *,
                 lease: float | None = None) -> None:
        parsed = urlparse(uri)
        if parsed.scheme not in S3_SCHEMES or not parsed.netloc:
            raise StorageError(f"not an s3:// URI: {uri}")
        self.uri = uri
        self.bucket = parsed.netloc
        prefix = parsed.path.strip("/")
        self.key = f"{prefix}/{LOCK_NAME}" if prefix else LOCK_NAME
        self.lease = lease if lease is not None else lease_seconds()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client_kwargs = boto_client_kwargs(storage_options or {})
        self._client: Any = None
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # set when a renewal finds the lock taken over

    def _s3(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError as err:
                raise StorageError("writing an index on S3 needs boto3, which is not installed",
                                   hint="pip install 'codesearch[s3]'") from err
            self._client = boto3.client("s3", **self._client_kwargs)
        return self._client

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "lease_s": self.lease,
                           "acquired_at": time.time()}).encode()

    # acquire / release ------------------------------------------------------------------------

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, retrying up to ``wait`` seconds; IndexBusyError names the holder."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + wait
        s3 = self._s3()
        while True:
            try:
                resp = s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(),
                                     IfNoneMatch="*", ContentType="application/json")
                self._etag = resp["ETag"]
                break
            except ClientError as err:
                if _code(err) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise _storage_error("lock", self.uri, err) from err
            except BotoCoreError as err:
                raise _storage_error("lock", self.uri, err) from err
            holder = self._take_over_if_stale()
            if holder is None:
                break
            if time.monotonic() >= deadline:
                raise IndexBusyError(f"another cs process ({holder}) is writing the index at "
                                     f"{self.uri}", hint=BUSY_HINT.format(lease=self.lease))
            time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
        self._start_heartbeat()

    def _take_over_if_stale(self) -> str | None:
        """Replace an expired lock (returns None once ours), else describe its holder."""
        from botocore.exceptions import ClientError

        s3 = self._s3()
        try:
            got = s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                return "a writer that just finished"  # released meanwhile: retry at once
            raise _storage_error("lock", self.uri, err) from err
        try:
            info = json.loads(got["Body"].read())
        except ValueError:
            info = {}
        holder = str(info.get("owner", "?"))
        lease = float(info.get("lease_s", self.lease))
        headers = got.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        try:
            now = parsedate_to_datetime(headers["date"])
            age = (now - got["LastModified"]).total_seconds()
        except (KeyError, TypeError, ValueError):
            age = 0.0
        if age <= lease:
            return holder
        try:
            resp = s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(),
                                 IfMatch=got["ETag"], ContentType="application/json")
        except ClientError as err:
            if _code(err) in ("PreconditionFailed", "412", "NoSuchKey", "404",
                              "ConditionalRequestConflict"):
                return holder  # another writer took it over first
            raise _storage_error("lock", self.uri, err) from err
        self._etag = resp["ETag"]
        return None

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="cs-lock-lease",
                                        daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        while not self._stop.wait(self.lease / 3):
            try:
                resp = self._s3().put_object(Bucket=self.bucket, Key=self.key, Body=self._body(),
                                             IfMatch=self._etag, ContentType="application/json")
                self._etag = resp["ETag"]
            except ClientError as err:
                if _code(err) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                    self.lost = True  # we stalled past the lease and someone took over
                    return
            except BotoCoreError:
                pass  # a network blip: try again at the next tick, well within the lease

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._etag is None or self.lost:
            return
        try:
            self._s3().delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self._etag)
        except (ClientError, BotoCoreError):
            pass  # not ours any more, or unreachable: the lease expires on its own
        self._etag = None

    def __enter__(self) -> S3WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", "")) if hasattr(err, "response") else ""


def _storage_error(action: str, uri: str, err: Exception) -> StorageError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return StorageError(f"cannot {action} the index at {uri}: {first[:200]}",
                        hint="check the bucket, credentials and endpoint (AWS_* variables or "
                             "--storage-option)")


def remote_writer_lock(uri: str, storage_options: Mapping[str, str] | None = None) -> S3WriterLock:
    """The writer lock for an index at an object-store ``uri``: an :class:`S3WriterLock` for
    S3-compatible stores; a StorageError for stores cs cannot lock (reading them works)."""
    scheme = urlparse(uri).scheme
    if scheme not in S3_SCHEMES:
        raise StorageError(f"cs cannot take a writer lock on {scheme}:// stores, so it does not "
                           f"write the index at {uri}",
                           hint="build the index on s3:// (or a local path); find, similar and "
                                "status read any store LanceDB supports")
    return S3WriterLock(uri, storage_options)


class WriterLock:
    """One writer per index: an exclusive ``flock`` on ``<index>/.cs-writer.lock``.

    The kernel drops the lock when the process dies, so a kill -9 never leaves a stale lock. Object
    stores have no such primitive; :meth:`Store.writer_lock` takes a lease object there instead
    (:mod:`codesearch.store.locks`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, polling up to ``wait`` seconds; IndexBusyError names the holder's pid."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # an unwritable index directory fails here first
            raise storage_error("lock", str(self.path.parent), err) from err
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise IndexBusyError(
                        f"another cs process (pid {holder}) is writing this index",
                        hint="wait for it to finish (or stop `cs watch`), then retry",
                    ) from None
                time.sleep(0.1)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as err:  # a full disk
            os.close(fd)
            raise storage_error("lock", str(self.path.parent), err) from err
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

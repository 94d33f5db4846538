"""``cs index --background``: phase 2 of an index run (embedding) in a detached process.

The foreground ``cs index`` does phase 1 (the tree is searchable) and then starts a detached
``cs index`` (its own session, so closing the terminal does not stop it) that takes the writer
lock and embeds what is missing, logging to a file. A small state file records the process, so
``cs status`` can show it and ``cs index --stop`` can end it: SIGTERM makes it finish the batch in
progress and exit; every committed batch stays, and the next ``cs index`` or ``cs watch`` resumes.

State and log live under ``<CS_HOME>/background/``, one pair per index (keyed by its URI, so an
index on an object store works too).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from codesearch import config

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.index.indexer import IndexOptions
    from codesearch.location import IndexSettings


@dataclass(frozen=True)
class BackgroundJob:
    """A detached phase 2 for one index."""

    pid: int
    root: str
    index: str
    log: str
    started_at: float

    def running(self) -> bool:
        """Whether the process is still alive (a reaped or never-started pid is not)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, owned by someone else
            return True
        return not _is_zombie(self.pid)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "running": self.running()}


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _paths(index_uri: str) -> tuple[Path, Path]:
    key = hashlib.sha256(index_uri.encode()).hexdigest()[:16]
    folder = config.cache_dir() / "background"
    return folder / f"{key}.json", folder / f"{key}.log"


def job_for(index_uri: str) -> BackgroundJob | None:
    """The recorded background job of this index, if any (running or not)."""
    state, _ = _paths(index_uri)
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
        return BackgroundJob(**data)
    except (OSError, ValueError, TypeError):
        return None


def record(job: BackgroundJob) -> None:
    """Write the state file (atomically: a reader never sees half of it)."""
    state, _ = _paths(job.index)
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = state.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(job)), encoding="utf-8")
    tmp.replace(state)


def forget(index_uri: str, pid: int) -> None:
    """Remove the state file if it still names ``pid`` (a newer job's stays)."""
    job = job_for(index_uri)
    if job is not None and job.pid == pid:
        _paths(index_uri)[0].unlink(missing_ok=True)


def start(root: Path, index_uri: str, args: Sequence[str]) -> BackgroundJob:
    """Start ``cs index ROOT *args --background-child`` detached (new session, stdin closed,
    stdout and stderr appended to the log) and record it."""
    _, log = _paths(index_uri)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "codesearch", "index", str(root), *args, "--background-child"]
    with open(log, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    job = BackgroundJob(proc.pid, str(root), index_uri, str(log), time.time())
    record(job)
    return job


def child_args(settings: IndexSettings, options: IndexOptions) -> list[str]:
    """The ``cs index`` options a background child needs to write the same index the same way
    (the model as the index records it, so a relative directory means the same there)."""
    args = ["--json"]
    where = str(settings.index_dir.expanduser().resolve()) if settings.index_dir else None
    model = config.model_spec(options.model) if options.model else None
    for flag, value in (("--model", model), ("--dim", options.dim), ("--device", options.device),
                        ("--index-dir", where), ("--index-uri", settings.index_uri),
                        ("--cache-uri", options.cache_uri)):
        if value is not None:
            args += [flag, str(value)]
    for key, value in settings.storage_options.items():
        args += ["--storage-option", f"{key}={value}"]
    return args


def stop(index_uri: str, wait: float = 60.0) -> BackgroundJob | None:
    """SIGTERM the running job of this index and wait up to ``wait`` seconds for it to finish its
    batch and exit. Returns the job, or None when none is running."""
    job = job_for(index_uri)
    if job is None or not job.running():
        return None
    os.kill(job.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while job.running() and time.monotonic() < deadline:
        time.sleep(0.2)
    return job

"""A shared index on S3 (moto's real S3 server on 127.0.0.1): index through the real CLI, search
from another process, re-index incrementally, compare with a local index of the same tree; the
embedding cache in the bucket; one writer at a time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3", reason="the s3 extra (boto3) is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")

from tests.support.cli import cs  # noqa: E402

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")
REPO_ROOT = Path(__file__).resolve().parent.parent
QUERIES = ("arithmetic mean of a column", "parse a configuration file", "http request handler")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread of this process, reachable by subprocesses too."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the standard AWS variables point every client (lancedb, boto3) at moto."""
    for key, value in {
        "AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = f"cs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def cs_process(*args: str, env: dict[str, str] | None = None) -> Any:
    """The real CLI in a separate process (another machine's view of the bucket)."""
    result = subprocess.run([sys.executable, "-m", "codesearch", *args], capture_output=True,
                            text=True, cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                            timeout=300)
    assert result.returncode in (0, 1), result.stderr
    return result


def cs_ok(*args: str) -> Any:
    """The real CLI in this process (each extra process costs seconds of imports); exit code 0 or
    1 (no hits), never an error."""
    result = cs(*args)
    assert result.exit_code in (0, 1), result.output
    return result


def find_hits(root: Path, query: str, *index_args: str) -> list[dict[str, Any]]:
    result = cs("find", query, "--path", str(root), "--json", "-k", "6", *index_args)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def same_hits(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [(h["path"], h["start_line"], h["end_line"]) for h in a] == \
        [(h["path"], h["start_line"], h["end_line"]) for h in b]
    assert [h["score"] for h in a] == pytest.approx([h["score"] for h in b], abs=1e-5)


def index_hashes(uri: str) -> set[str]:
    from codesearch.store.store import Store

    return {c.hash for c in Store.open(uri).chunks()}


def test_s3_index_search_reindex_matches_local(py_go_repo: Path, bucket: str, tmp_path: Path,
                                               tiny_model_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # One precision for every run, in-process and subprocess: `auto` measures speed, and a loaded
    # machine may pick int8 in one process and fp32 in another, whose vectors (rightly) live in
    # different cache tables, so the second run would find nothing cached.
    monkeypatch.setenv("CS_PRECISION", "fp32")
    uri = f"s3://{bucket}/team/idx"
    cache = f"s3://{bucket}/team/cache"
    first = cs_process("index", str(py_go_repo), "--index-uri", uri, "--cache-uri", cache,
                       "--model", str(tiny_model_dir), "--json")
    stats = json.loads(first.stdout)
    assert stats["index"] == uri and stats["files_changed"] > 0
    assert stats["chunks_embedded"] == len(index_hashes(uri)) > 0  # fresh: every distinct text

    # A developer's machine: nothing cached locally, the CI's cache in the bucket -> embeds nothing.
    local = tmp_path / "local-index"
    result = cs("index", str(py_go_repo), "--index-dir", str(local),
                "--cache-uri", cache, "--json", "--model", str(tiny_model_dir))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks_embedded"] == 0

    # Searched from another process, the shared index answers exactly as the local one.
    remote = json.loads(cs_process("find", QUERIES[0], "--path", str(py_go_repo),
                                   "--index-uri", uri, "--json", "-k", "6").stdout)
    assert remote
    same_hits(remote, find_hits(py_go_repo, QUERIES[0], "--index-dir", str(local)))
    for query in QUERIES[1:]:
        same_hits(find_hits(py_go_repo, query, "--index-uri", uri),
                  find_hits(py_go_repo, query, "--index-dir", str(local)))
    status = cs_ok("status", str(py_go_repo), "--index-uri", uri, "--json")
    assert json.loads(status.stdout)["changed_since"]["total"] == 0

    # Change one file: only its new chunks are embedded.
    from codesearch.documents import content_hash
    from codesearch.source.chunk import chunk_source
    target = next(p for p in sorted((py_go_repo / "py").rglob("*.py")) if p.stat().st_size > 200)
    rel = target.relative_to(py_go_repo).as_posix()
    target.write_text(target.read_text() + "\n\ndef freshly_added_helper(values):\n"
                      "    \"\"\"Sum of squares of the values.\"\"\"\n"
                      "    return sum(v * v for v in values)\n")
    before = index_hashes(uri)
    new_hashes = {content_hash(c) for c in chunk_source(target.read_text(), rel, "python")}
    expected = len(new_hashes - before)
    assert expected >= 1
    status = json.loads(cs_ok("status", str(py_go_repo), "--index-uri", uri, "--json").stdout)
    assert status["changed_since"]["modified"] == 1
    second = json.loads(cs_ok("index", str(py_go_repo), "--index-uri", uri, "--cache-uri", cache,
                              "--json").stdout)
    assert second["files_changed"] == 1 and second["files_unchanged"] == stats["files_changed"] - 1
    assert second["chunks_embedded"] == expected

    result = cs("index", str(py_go_repo), "--index-dir", str(local), "--cache-uri", cache, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks_embedded"] == 0  # the CI run cached the new chunk
    for query in (*QUERIES, "sum of squares"):
        same_hits(find_hits(py_go_repo, query, "--index-uri", uri),
                  find_hits(py_go_repo, query, "--index-dir", str(local)))

    # similar works on the shared index too.
    result = cs("similar", f"{target}:{len(target.read_text().splitlines())}",
                "--path", str(py_go_repo), "--index-uri", uri, "--json", "-k", "3")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3

    # So does dups, from the stored vectors: the same groups as the local index.
    args = ("--json", "--threshold", "0.5", "--min-lines", "3")
    remote_dups = json.loads(cs_ok("dups", str(py_go_repo), "--index-uri", uri, *args).stdout)
    assert remote_dups
    assert remote_dups == json.loads(cs_ok("dups", str(py_go_repo), "--index-dir", str(local),
                                           *args).stdout)


def test_storage_options_instead_of_environment(py_go_repo: Path, bucket: str, s3_endpoint: str,
                                                tiny_model_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(key)
    uri = f"s3://{bucket}/opts"
    opts = [f"aws_endpoint={s3_endpoint}", "aws_access_key_id=testing",
            "aws_secret_access_key=testing", "aws_region=us-east-1", "allow_http=true"]
    flags = [arg for o in opts for arg in ("--storage-option", o)]
    result = cs("index", str(py_go_repo / "go"), "--index-uri", uri, "--json",
                "--model", str(tiny_model_dir), *flags)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks_total"] > 0
    result = cs("status", str(py_go_repo / "go"), "--index-uri", uri, "--json", *flags)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"] > 0


def test_one_writer_at_a_time_and_stale_lock_expires(py_go_repo: Path, bucket: str,
                                                     tiny_model_dir: Path) -> None:
    from codesearch.store.locks import LOCK_NAME, S3WriterLock

    uri = f"s3://{bucket}/locked"
    holder = S3WriterLock(uri, lease=30)
    holder.acquire()
    try:
        result = cs("index", str(py_go_repo / "go"), "--index-uri", uri,
                    "--model", str(tiny_model_dir))
        assert result.exit_code != 0
        assert "is writing the index" in result.stderr and holder.owner in result.stderr
        with pytest.raises(Exception, match="is writing the index"):
            S3WriterLock(uri, lease=30).acquire(wait=0.3)
    finally:
        holder.release()
    s3 = boto3.client("s3")
    with pytest.raises(s3.exceptions.ClientError):  # released: the object is gone
        s3.head_object(Bucket=bucket, Key=f"locked/{LOCK_NAME}")

    # A writer that died holding the lock: once its lease is over, the next writer takes over.
    s3.put_object(Bucket=bucket, Key=f"locked/{LOCK_NAME}",
                  Body=json.dumps({"owner": "dead-host:1", "lease_s": 1}).encode())
    with pytest.raises(Exception, match="dead-host:1"):
        S3WriterLock(uri, lease=30).acquire()
    time.sleep(2.5)
    result = cs("index", str(py_go_repo / "go"), "--index-uri", uri,
                "--model", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    with pytest.raises(s3.exceptions.ClientError):  # and released it when done
        s3.head_object(Bucket=bucket, Key=f"locked/{LOCK_NAME}")


def test_s3_index_keeps_its_size_across_edits(py_go_repo: Path, bucket: str, tmp_path: Path,
                                              tiny_model_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 27 on an object store: each run that writes compacts and drops old versions (a grace
    # window of 0: no reader here); `cs status` shows the size and versions; `--compact` works.
    from codesearch.store.store import Store
    from codesearch.store.versions import GRACE_ENV

    uri = f"s3://{bucket}/growth/idx"
    cs_ok("index", str(py_go_repo), "--index-uri", uri, "--model", str(tiny_model_dir), "--json")
    fresh = Store.open(uri).footprint()
    monkeypatch.setenv(GRACE_ENV, "0")
    target = py_go_repo / "py" / "datatools" / "stats.py"
    for i in range(8):
        target.write_text(target.read_text() + f"\n\ndef edit_{i}(x):\n    return x + {i}\n")
        out = json.loads(cs_ok("index", str(py_go_repo), "--index-uri", uri, "--json").stdout)
        assert out["files_changed"] == 1
    edited = Store.open(uri).footprint()
    assert edited["versions"]["chunks"] <= 3 and edited["versions"]["files"] <= 3, edited
    assert edited["bytes"] <= 2 * fresh["bytes"], (edited, fresh)
    status = json.loads(cs_ok("status", str(py_go_repo), "--index-uri", uri, "--json").stdout)
    assert status["size_bytes"] == edited["bytes"] and status["versions"] == edited["versions"]
    # A search from another process still answers, and --compact leaves one version of chunks.
    assert json.loads(cs_process("find", "edit_7", "--path", str(py_go_repo), "--index-uri", uri,
                                 "--mode", "lexical", "--json").stdout)
    cs_ok("index", str(py_go_repo), "--index-uri", uri, "--compact", "--json")
    assert Store.open(uri).footprint()["versions"]["chunks"] == 1


def test_s3_index_with_the_qwen3_preset_matches_local(py_go_repo: Path, bucket: str,
                                                      tmp_path: Path, qwen3_hub: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(qwen3_hub))
    monkeypatch.setenv("CS_PRECISION", "fp32")
    uri = f"s3://{bucket}/qwen3"
    cs_ok("index", str(py_go_repo), "--index-uri", uri, "--model", "qwen3-0.6b", "--dim", "64")
    cs_ok("index", str(py_go_repo), "--index-dir", str(tmp_path / "local"), "--model",
          "qwen3-0.6b", "--dim", "64")
    for query in QUERIES[:2]:
        same_hits(find_hits(py_go_repo, query, "--index-uri", uri),
                  find_hits(py_go_repo, query, "--index-dir", str(tmp_path / "local")))

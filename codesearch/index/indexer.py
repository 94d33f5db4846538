"""Keep a root's index current: discover -> diff by stat and hash -> chunk -> embed only what is
missing -> store, one atomic batch at a time.

A whole-tree run (``cs index``) has two phases, so the tree is searchable in seconds:

1. **chunk**: every changed file is chunked and committed with its full-text entry; a chunk whose
   vector is already known (the index, the shared embedding cache) gets it now, the others get a
   zero vector marked not embedded. Then the full-text index is built: lexical search works.
2. **embed** (:meth:`Indexer.fill_vectors`): the chunks without a vector are embedded, the code a
   user most likely searches first first (index.order.embed_order), and committed in batches (one
   commit each, vector columns only). Stopping here (Ctrl-C, SIGTERM, kill -9) keeps the lexical
   index and every committed batch; the next run resumes with what is missing.

- Unchanged files cost a stat (mtime and size); when those differ the file's hash decides.
- A chunk's vector comes from the index itself (same file, same content), else the shared embedding
  cache, else the model; the model is loaded only when something must be embedded.
- Work is committed in batches of files (:meth:`codesearch.store.store.Store.commit_batch`); after
  Ctrl-C or kill -9 the next run redoes at most one batch. Chunk ids are deterministic, so redoing
  never duplicates.
- One writer per index (:meth:`codesearch.store.store.Store.writer_lock`).

The embedding step is a pure batch function (documents.EmbedFn: texts -> vectors), and what phase 2
still has to embed is one method (:meth:`Indexer.missing_documents`), so another engine (Ray,
index/ray.py) embeds exactly that without touching the rest. What the model and the full-text index
read is codesearch.documents; whether a model fits the index, embed.handle; which files changed,
index.plan.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from codesearch import config
from codesearch.config import is_remote
from codesearch.documents import (
    DOCUMENT_TASK,
    Document,
    EmbedFn,
    chunk_documents,
    embed_batch,
    embed_documents,
)
from codesearch.embed.catalog import licence_notice
from codesearch.embed.handle import (
    EmbedderHandle,
    check_compatible,
    check_writable,
    describe,
    describe_unloaded,
    handle_for,
)
from codesearch.embed.rates import record_rate
from codesearch.errors import IndexMismatchError, UsageError
from codesearch.index.order import embed_order, git_recency
from codesearch.index.plan import chunk_records, plan
from codesearch.source.chunk import CHUNKER_VERSION, Chunk, chunk_source
from codesearch.source.discover import Discovery, SourceFile, read_source
from codesearch.source.languages import language_for_path
from codesearch.store.cache import EmbeddingCache
from codesearch.store.records import REBUILD_HINT, ChunkRecord, FileRecord, Manifest
from codesearch.store.store import DEFAULT_ANN_THRESHOLD, Store

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.embed import Embedder




# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexProgress:
    """What the core reports while indexing; the CLI turns it into a progress bar."""

    # "scan" (walking the tree), "chunk" (phase 1: chunk and store), "embed" (phase 2: vectors),
    # "optimize" (compaction, full-text and vector indexes)
    phase: str
    files_done: int = 0
    files_total: int = 0
    chunks_embedded: int = 0  # texts run through the model so far
    chunks_reused: int = 0
    chunks_to_embed: int = 0  # phase 2: how many chunks this run embeds in all (the bar's total)


ProgressFn = Callable[[IndexProgress], None]


@dataclass
class IndexStats:
    """The summary of one run (``cs index --json`` prints :meth:`to_dict`)."""

    root: str
    index: str
    model: str = ""
    dim: int = 0
    rebuilt: bool = False
    files_scanned: int = 0  # files discovery offered
    files_changed: int = 0  # new or modified in content: (re)chunked and written
    files_new: int = 0  # of files_changed, never indexed before
    files_touched: int = 0  # stat changed, content did not: only the record is updated
    files_unchanged: int = 0
    files_removed: int = 0
    files_skipped: int = 0  # refused by discovery (ignored, binary, too large, ...)
    files_failed: int = 0  # could not be read or chunked; reported, never fatal
    chunks_embedded: int = 0  # texts run through the model
    chunks_reused: int = 0  # chunks of changed files whose vector came from the index or cache
    chunks_total: int = 0  # rows in the index after the run (a doc chunk has two with a model
    # that has task prefixes: its qa and code2nl sides; chunks_embedded/reused count rows too)
    chunks_with_vectors: int = 0  # of chunks_total, those with their vector (the rest: lexical)
    chunks_unresolved: int = 0  # phase 2: files changed since phase 1; the next run redoes them
    seconds_searchable: float = 0.0  # when phase 1 ended: the whole tree lexically searchable
    batches: int = 0
    seconds: float = 0.0
    stopped: bool = False  # a stop request (SIGTERM) ended the run before it embedded everything
    skips: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), for --verbose

    def to_dict(self, *, verbose: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``skips`` only when ``verbose``."""
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        skips = data.pop("skips")
        if verbose:
            data["skips"] = [{"path": p, "reason": r} for p, r in skips]
        return data


# --- the indexer -------------------------------------------------------------------------------


@dataclass
class IndexOptions:
    """Knobs of one run. ``model=None`` means: the index's own model, else the default model."""

    model: str | None = None
    dim: int | None = None
    device: str | None = None
    rebuild: bool = False
    batch_files: int = 64
    batch_chunks: int = 512
    max_file_bytes: int = config.DEFAULT_MAX_FILE_BYTES
    lock_wait: float = 2.0
    ann_threshold: int = DEFAULT_ANN_THRESHOLD
    cache_uri: str | None = None  # the shared embedding cache; default config.embedding_cache_dir()
    # Phase 2 of run(): False stops after phase 1 (``cs index --background`` finishes it in
    # another process).
    embed: bool = True
    # Phase 2 commits a batch about every this many seconds of embedding (sized from the measured
    # rate, between EMBED_BATCH_MIN and batch_chunks chunks): a slow model's vectors still appear
    # steadily, and a kill loses at most this much work.
    embed_batch_seconds: float = 10.0
    # Compact and drop old versions even when the run wrote nothing (``cs index --compact``).
    compact: bool = False


@dataclass
class _Batch:
    files: list[tuple[FileRecord, list[Chunk]]] = field(default_factory=list)
    touched: list[FileRecord] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reindexed: set[str] = field(default_factory=set)  # paths that already have rows in the index
    n_chunks: int = 0

    def __len__(self) -> int:
        return len(self.files) + len(self.touched) + len(self.removed)


class Indexer:
    """Brings one root's index up to date. Build it, then call :meth:`run` (whole tree) or
    :meth:`sync` (given files, for watch mode) while holding :meth:`lock`."""

    def __init__(self, root: Path, store: Store, options: IndexOptions | None = None, *,
                 progress: ProgressFn | None = None, embed_fn: EmbedFn | None = None,
                 loader: Callable[..., Embedder] | None = None,
                 notify: Callable[[str], None] | None = None) -> None:
        self.root = root.resolve()
        self.store = store
        self.options = options or IndexOptions()
        self._progress = progress or (lambda p: None)
        self._embed_fn = embed_fn
        self._loader = loader
        self._notify = notify
        self.manifest: Manifest | None = None
        self.handle: EmbedderHandle | None = None
        self.cache: EmbeddingCache | None = None
        self.stats = IndexStats(root=str(self.root), index=store.uri)

    # setup ----------------------------------------------------------------------------------

    def prepare(self) -> Manifest:
        """Check (or create) the manifest; returns it. Call while holding the writer lock.

        Raises IndexMismatchError when the index was built with another model or dim and
        ``rebuild`` is off; with ``rebuild`` the old tables are dropped first. An index from an
        older chunker is chunked again (same model; cached vectors reused). The checks are
        embed.handle's (check_writable, and check_compatible once the model loads).
        """
        opts = self.options
        try:
            manifest = self.store.read_manifest()
        except IndexMismatchError:
            if not opts.rebuild:
                raise
            manifest = None
        requested = config.model_spec(opts.model) if opts.model else None
        rechunk = False
        if manifest is not None and not opts.rebuild:
            rechunk = check_writable(manifest, requested=requested, dim=opts.dim)
            if rechunk and self._notify is not None:
                # Chunked by an older cs: chunk everything again with the same model. The
                # embedding cache still holds every chunk text seen before, so only texts the new
                # chunker writes differently are embedded.
                self._notify(f"the index was chunked by chunker "
                             f"{manifest.chunker_version!r}; chunking it again with "
                             f"{CHUNKER_VERSION!r} (cached vectors are reused)")
        if manifest is None or opts.rebuild or rechunk:
            spec = requested or (manifest.model if manifest
                                 else config.model_spec(config.default_model()))
            if manifest is None and self._notify is not None:
                if (line := licence_notice(spec)) is not None:
                    self._notify(line)
            dim = manifest.dim if rechunk and manifest is not None else opts.dim
            self.handle = EmbedderHandle(spec, dim=dim, device=opts.device,
                                         loader=self._loader, notify=self._notify)
            # A new index: described from the model's files, so phase 1 (searchable) needs no
            # weights; the model loads when phase 2 first embeds. Otherwise load before
            # dropping anything: a model that fails to load must not cost the index.
            described = describe_unloaded(spec, dim, self.root) if manifest is None else None
            if described is not None:
                manifest = described

                def check(embedder: Embedder, expected: Manifest = described) -> None:
                    check_compatible(expected, describe(embedder, spec, self.root))

                self.handle.on_load(check)
            else:
                manifest = describe(self.handle.get(), spec, self.root)
            if opts.rebuild or rechunk:
                self.store.reset()
                self.stats.rebuilt = True
            self.store.write_manifest(manifest)
        else:
            self.handle = handle_for(manifest, requested, self.root, device=opts.device,
                                     loader=self._loader, notify=self._notify)
        self.manifest = manifest
        self.stats.model, self.stats.dim = manifest.model, manifest.dim
        self.store.ensure_tables(manifest.dim)
        # An object-store cache shares the index's credentials; the local default needs none.
        remote_cache = opts.cache_uri is not None and is_remote(opts.cache_uri)
        self.cache = EmbeddingCache.open(
            manifest.identity(), manifest.dim, uri=opts.cache_uri,
            storage_options=self.store.storage_options if remote_cache else None)
        return manifest

    def lock(self) -> Any:
        """The writer lock (a context manager); IndexBusyError if another writer holds it."""
        return self.store.writer_lock(self.options.lock_wait)

    # whole tree -----------------------------------------------------------------------------

    def run(self, *, should_stop: Callable[[], bool] | None = None,
            on_searchable: Callable[[IndexStats], None] | None = None,
            defer: bool | None = None) -> IndexStats:
        """Index the whole root: the usual entry point (``cs index``). Takes the lock itself.

        Phase 1 ends with the whole tree lexically searchable (``on_searchable`` is called then,
        still under the lock); phase 2 (unless ``options.embed`` is off) embeds what is missing
        until done or ``should_stop()`` turns true between two batches. ``defer``: whether phase 1
        leaves every new vector to phase 2 (None: when the change is big, see below; True for an
        engine whose phase 2 embeds elsewhere)."""
        if not self.root.is_dir():
            raise UsageError(f"{self.root} is not a directory")
        start = time.monotonic()
        with self.lock():
            self.prepare()
            self._progress(IndexProgress("scan"))
            discovery = Discovery(self.root, max_file_bytes=self.options.max_file_bytes)
            records = self.store.file_records()
            the_plan = plan(discovery, records)
            self.stats.files_skipped = len(discovery.skipped)
            self.stats.skips.extend((s.rel, s.reason) for s in discovery.skipped)
            self.stats.files_scanned = the_plan.scanned
            self.stats.files_unchanged = the_plan.unchanged
            self.stats.files_new = the_plan.new
            # Two phases when embedding may take long (a new index, or more than a batch of files
            # changed); a small incremental run embeds in place, so every commit is complete.
            if defer is None:
                defer = (not records or self.stats.rebuilt
                         or len(the_plan.candidates) > self.options.batch_files)
            self._apply(the_plan.candidates, the_plan.removed, records, defer=defer)
            self._finish(start)
            self.stats.seconds_searchable = self.stats.seconds
            if on_searchable is not None:
                on_searchable(self.stats)
            if self.options.embed:
                before = self.stats.batches
                self.fill_vectors(should_stop=should_stop)
                if self.stats.batches > before:
                    self._finish(start)
        return self.stats

    def sync(self, candidates: Sequence[SourceFile], removed: Sequence[str], *,
             defer: bool = False) -> IndexStats:
        """Re-check ``candidates`` (hash first, so unchanged content costs no chunking) and drop
        ``removed`` paths. For watch mode; the caller holds the lock and has called prepare().
        ``defer``: store new chunks without their vectors (phase 1; :meth:`fill_vectors` later),
        else embed them now."""
        start = time.monotonic()
        self.stats = IndexStats(root=str(self.root), index=self.store.uri,
                                model=self.stats.model, dim=self.stats.dim)
        records = self.store.file_records()
        self.stats.files_new += sum(1 for f in candidates if f.rel not in records)
        self._apply(list(candidates), [p for p in removed if p in records], records, defer=defer)
        self._finish(start, optimize=False)
        return self.stats

    # the pipeline ---------------------------------------------------------------------------

    def _apply(self, candidates: list[SourceFile], removed: list[str],
               records: dict[str, FileRecord], *, defer: bool = False) -> None:
        """Chunk and commit ``candidates``, drop ``removed``. ``defer``: chunks whose vector is
        not known yet are stored without one (phase 1), else they are embedded now."""
        total = len(candidates)
        done = 0
        batch = _Batch(removed=list(removed))
        self.stats.files_removed += len(removed)
        self._report(done, total)
        for f in candidates:
            old = records.get(f.rel)
            try:
                text = read_source(f)
            except OSError as err:
                self._fail(f.rel, f"unreadable: {err.strerror or err}", batch, old)
                done += 1
                continue
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            now = time.time()
            if old is not None and old.hash == digest:
                batch.touched.append(FileRecord(f.rel, f.mtime_ns, f.size, digest, old.language,
                                                old.chunks, old.indexed_at))
                self.stats.files_touched += 1
            else:
                try:
                    chunks = chunk_source(text, f.rel, f.language)
                except Exception as err:  # noqa: BLE001 - a bad file is reported, never fatal
                    self._fail(f.rel, f"chunker failed: {type(err).__name__}: {err}"[:200],
                               batch, old)
                    done += 1
                    continue
                language = f.language or (chunks[0].language if chunks else "")
                batch.files.append((FileRecord(f.rel, f.mtime_ns, f.size, digest, language,
                                               len(chunks), now), chunks))
                batch.n_chunks += len(chunks)
                if old is not None:
                    batch.reindexed.add(f.rel)
                self.stats.files_changed += 1
            done += 1
            if (len(batch.files) + len(batch.touched) >= self.options.batch_files
                    or batch.n_chunks >= self.options.batch_chunks):
                self._flush(batch, defer=defer)
                batch = _Batch()
                self._report(done, total)
        if len(batch):
            self._flush(batch, defer=defer)
        self._report(done, total)

    def _fail(self, rel: str, reason: str, batch: _Batch, old: FileRecord | None) -> None:
        self.stats.files_failed += 1
        self.stats.skips.append((rel, reason))
        if old is not None:  # keep no stale chunks of a file we can no longer read
            batch.removed.append(rel)
            self.stats.files_removed += 1

    def _flush(self, batch: _Batch, *, defer: bool = False) -> None:
        assert self.cache is not None and self.manifest is not None
        dim = self.manifest.dim
        scheme = self.manifest.prefix_scheme
        rows: list[ChunkRecord] = []
        docs: dict[str, Document] = {}  # hash -> what the embedder sees
        for _record, chunks in batch.files:
            rows.extend(chunk_records(chunks, scheme))
            chunk_documents(chunks, scheme, into=docs)
        vectors: dict[str, np.ndarray] = {}
        if rows:
            wanted = set(docs)
            if batch.reindexed:  # unchanged functions of an edited file keep their vectors
                stored = self.store.vectors_by_hash(sorted(batch.reindexed), dim)
                vectors.update((h, v) for h, v in stored.items() if h in wanted)
            missing = sorted(wanted - vectors.keys())
            if missing:
                vectors.update(self.cache.get(missing))
                missing = [h for h in missing if h not in vectors]
            if defer:  # phase 1: the missing ones wait for fill_vectors()
                self.stats.chunks_reused += sum(1 for r in rows if r.hash in vectors)
            else:
                if missing:
                    fresh = self._embed([docs[h] for h in missing])
                    self.cache.put(missing, fresh)  # before the index: a crash keeps the work
                    vectors.update(zip(missing, fresh, strict=True))
                self.stats.chunks_embedded += len(missing)
                self.stats.chunks_reused += len(rows) - len(missing)
        zero = np.zeros(dim, dtype=np.float32)
        matrix = (np.stack([vectors.get(r.hash, zero) for r in rows]).astype(np.float32) if rows
                  else np.zeros((0, dim), dtype=np.float32))
        self.store.commit_batch(files=[r for r, _ in batch.files], chunks=rows, vectors=matrix,
                                touched=batch.touched, removed=batch.removed,
                                embedded=[r.hash in vectors for r in rows])
        self.stats.batches += 1

    def _embed(self, docs: list[Document], *, to_embed: int = 0) -> np.ndarray:
        assert self.manifest is not None
        base = self.stats.chunks_embedded
        done = 0
        phase = "embed" if to_embed else "chunk"

        def tick(k: int) -> None:
            nonlocal done
            done += k
            self._progress(IndexProgress(phase, self._files_done, self._files_total,
                                         base + done, self.stats.chunks_reused, to_embed))

        if self._embed_fn is not None:
            embed: EmbedFn = self._embed_fn
        else:
            assert self.handle is not None
            embedder = self.handle.get()

            def embed(texts: Sequence[str], progress: Callable[[int], None] | None = None,
                      task: str = DOCUMENT_TASK) -> np.ndarray:
                return embed_batch(embedder, texts, progress, task)

        out = embed_documents(embed, docs, tick)
        if out.shape != (len(docs), self.manifest.dim):
            raise IndexMismatchError(
                f"the model returned vectors of shape {out.shape}, the index needs "
                f"({len(docs)}, {self.manifest.dim})", hint=REBUILD_HINT)
        return out

    _files_done = 0
    _files_total = 0
    _recency: dict[str, int] | None = None  # git_recency, once per indexer (watch asks often)

    def _report(self, done: int, total: int) -> None:
        self._files_done, self._files_total = done, total
        self._progress(IndexProgress("chunk", done, total, self.stats.chunks_embedded,
                                     self.stats.chunks_reused))

    def _finish(self, start: float, *, optimize: bool = True) -> None:
        assert self.manifest is not None and self.cache is not None
        # A run that changed nothing skips compaction (it only drops old versions), unless an
        # earlier run was killed before building the indexes, or compaction was asked for.
        if optimize and (self.stats.batches or self.options.compact
                         or self.store.needs_indexes()):
            self._progress(IndexProgress("optimize", self._files_done, self._files_total,
                                         self.stats.chunks_embedded, self.stats.chunks_reused))
            self.store.optimize(ann_threshold=self.options.ann_threshold)
            self.cache.optimize()
        elif optimize:
            # Nothing to compact, but the versions an earlier run kept for its readers are
            # past their grace by now: dropping them is cheap and is what shrinks a fresh index.
            self.store.prune_versions()
        self.stats.chunks_with_vectors, self.stats.chunks_total = self.store.coverage()
        self.stats.seconds = time.monotonic() - start
        self.manifest = replace(self.manifest, last_run_at=time.time(),
                                last_run=self.stats.to_dict())
        self.store.write_manifest(self.manifest)


    # phase 2 ---------------------------------------------------------------------------------

    def fill_vectors(self, *, should_stop: Callable[[], bool] | None = None) -> int:
        """Phase 2: give every chunk still without a vector its vector, in index.order.embed_order,
        one commit per batch (:meth:`Store.update_vectors`). Vectors found in the shared cache
        (another root embedded the same code meanwhile) come first and cost nothing. A batch is
        sized to about ``options.embed_batch_seconds`` of embedding at the measured rate.
        ``should_stop()`` is asked between batches. Returns how many chunks got a vector.

        The texts are rebuilt by chunking the file again (the index does not store what the
        embedder sees); a file whose content changed since it was chunked is left alone, to be
        re-chunked by the next run (``stats.chunks_unresolved``). Call while holding the lock,
        after :meth:`prepare`."""
        assert self.cache is not None and self.manifest is not None
        cache = self.cache
        stop = should_stop or (lambda: False)
        missing = self.store.missing_vectors()
        if not missing:
            return 0
        filled = 0
        # Free vectors first: hashes the shared cache already holds.
        cached = self.cache.get(sorted({h for _, _, h in missing}))
        if cached:
            known = [(i, h) for i, _, h in missing if h in cached]
            for start in range(0, len(known), 4096):
                part = known[start:start + 4096]
                self.store.update_vectors([i for i, _ in part],
                                          np.stack([cached[h] for _, h in part]))
                self.stats.batches += 1
            filled += len(known)
            self.stats.chunks_reused += len(known)
            missing = [m for m in missing if m[2] not in cached]
        records = self.store.file_records()
        order = self._by_file_in_embed_order(missing, records)
        to_embed = len({h for _, _, h in missing})
        self._progress(IndexProgress("embed", chunks_to_embed=to_embed))
        embedded = 0
        rate = 0.0  # chunks per second, measured
        pending_ids: list[tuple[str, str]] = []  # (id, hash) awaiting a vector
        pending_docs: dict[str, Document] = {}
        base = self.stats.chunks_embedded
        embed_seconds = 0.0

        def commit() -> None:
            nonlocal embedded, filled, rate, pending_ids, pending_docs, embed_seconds
            hashes = list(pending_docs)
            began = time.monotonic()
            fresh = self._embed([pending_docs[h] for h in hashes], to_embed=to_embed)
            took = time.monotonic() - began
            embed_seconds += took
            rate = len(hashes) / took if took > 0 else rate
            cache.put(hashes, fresh)  # before the index: a crash keeps the work
            vectors = dict(zip(hashes, fresh, strict=True))
            self.store.update_vectors([i for i, _ in pending_ids],
                                      np.stack([vectors[h] for _, h in pending_ids]))
            self.stats.chunks_embedded += len(hashes)
            self.stats.batches += 1
            embedded += len(hashes)
            filled += len(pending_ids)
            pending_ids, pending_docs = [], {}
            if self.stats.batches % EMBED_OPTIMIZE_EVERY == 0:
                # A slow model commits small batches for hours: compact on the way, or every
                # query would read hundreds of fragments (bench/results/watch_commits.json).
                self._progress(IndexProgress("optimize"))
                self.store.optimize(ann_threshold=self.options.ann_threshold)

        def batch_size() -> int:
            if rate <= 0:
                return EMBED_BATCH_MIN
            wanted = int(rate * self.options.embed_batch_seconds)
            return max(EMBED_BATCH_MIN, min(self.options.batch_chunks, wanted))

        for path, wanted in order:
            if stop():
                break
            docs = self._documents_of(path, records.get(path))
            for chunk_id_, h in wanted:
                if docs is None or h not in docs:
                    self.stats.chunks_unresolved += 1
                    continue
                pending_ids.append((chunk_id_, h))
                pending_docs.setdefault(h, docs[h])
                if len(pending_docs) >= batch_size():  # also inside a big file
                    commit()
                    self._progress(IndexProgress("embed", chunks_embedded=base + embedded,
                                                 chunks_reused=self.stats.chunks_reused,
                                                 chunks_to_embed=to_embed))
        if pending_ids and not stop():
            commit()
        if self.handle is not None and self.handle.loaded and self._embed_fn is None:
            # What `cs model list` shows as this model's speed here.
            emb = self.handle.get()
            record_rate(self.manifest.model, chunks=embedded, seconds=embed_seconds,
                        precision=str(getattr(emb, "precision", "fp32")),
                        device=str(getattr(emb, "device", "cpu")))
        return filled

    def missing_documents(self) -> dict[str, Document]:
        """hash -> document of every chunk still without a vector that the shared cache cannot
        give either: exactly what :meth:`fill_vectors` would embed now, in its order (a file
        changed since it was chunked is left out, as fill_vectors leaves it). For an engine that
        embeds them elsewhere (index/ray.py) and puts the vectors into the cache, where
        fill_vectors then finds them. Call while holding the lock, after :meth:`prepare`."""
        assert self.cache is not None
        missing = self.store.missing_vectors()
        if not missing:
            return {}
        cached = self.cache.get(sorted({h for _, _, h in missing}))
        missing = [m for m in missing if m[2] not in cached]
        records = self.store.file_records()
        docs: dict[str, Document] = {}
        for path, wanted in self._by_file_in_embed_order(missing, records):
            found = self._documents_of(path, records.get(path))
            for _, h in wanted:
                if found is not None and h in found:
                    docs.setdefault(h, found[h])
        return docs

    def _by_file_in_embed_order(self, missing: Sequence[tuple[str, str, str]],
                                records: dict[str, FileRecord]
                                ) -> list[tuple[str, list[tuple[str, str]]]]:
        """``missing`` (id, path, hash) grouped by file as (path, [(id, hash)]), the files in
        index.order.embed_order (git history read once per indexer)."""
        by_path: dict[str, list[tuple[str, str]]] = {}
        for chunk_id_, path, h in missing:
            by_path.setdefault(path, []).append((chunk_id_, h))
        if self._recency is None:
            self._recency = git_recency(self.root) or {}
        order = embed_order(self.root, list(by_path), records, recency=self._recency)
        return [(path, by_path[path]) for path in order]

    def _documents_of(self, path: str, record: FileRecord | None) -> dict[str, Document] | None:
        """hash -> document for the chunks of ``path`` as it is on disk, or None when it is gone
        or no longer what was indexed."""
        assert self.manifest is not None
        if record is None:
            return None
        full = self.root / path
        try:
            st = full.stat()
            text = read_source(SourceFile(full, path, st.st_size, st.st_mtime_ns, None))
        except OSError:
            return None
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if digest != record.hash:
            return None
        language = language_for_path(path, text.split("\n", 1)[0][:200].lstrip("\ufeff"))
        try:
            chunks = chunk_source(text, path, language)
        except Exception:  # noqa: BLE001 - it chunked in phase 1; a failure now is left alone
            return None
        return chunk_documents(chunks, self.manifest.prefix_scheme)


# Phase 2's smallest batch (the first, before a rate is measured, and for the slowest models).
EMBED_BATCH_MIN = 16
# Phase 2 compacts the index every this many commits.
EMBED_OPTIMIZE_EVERY = 100



"""Near-duplicate definitions across an index (``cs dups``): groups of functions, methods and
classes that do the same thing, most worth merging first.

Everything comes from what the index stores; nothing is embedded again:

- **candidates** from two near-linear sources: the stored vectors (:func:`neighbour_pairs`: each
  definition's nearest neighbours by cosine, through a partitioned exact search: see there) and
  text fingerprints (:func:`fingerprint`: exact copies share their whitespace-normalised text,
  renamed copies that text with every identifier but keywords blanked), which also work for
  chunks still without a vector (a progressive index);
- **pairs** above the threshold become groups, strongest first, two groups joining only when
  their centroids are as similar as a pair must be (:func:`_groups`: no chains of look-alikes);
  a group's ``similarity`` is the mean over its pairs, 1.0 for exact and renamed copies;
- **order**: ``similarity x lines`` (the lines merging would save: all but the longest copy's).

The pieces of one long definition never pair with each other (they share a definition id), test
code is left out unless asked for (ranking.is_test_path), and so are chunks that are no
definition (module glue, Markdown sections, line windows).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codesearch.hits import DupGroup, Hit
from codesearch.query.ranking import UNNAMED_KINDS, is_test_path
from codesearch.query.request import SearchOptions
from codesearch.store.records import StoredChunk, sql_in, vectors_from_arrow
from codesearch.store.store import Store

# The cosine two stored vectors need to be reported as near duplicates, and the smallest
# definition compared (shorter ones are accessors and one-liners, seldom worth merging).
# Measured with MiniLM on the shared eval's pair/ trees (bench/dups_quality.py).
DEFAULT_THRESHOLD = 0.9
DEFAULT_MIN_LINES = 5
# Each definition keeps its NEIGHBOURS nearest candidates: bounds the pairs (and so the time) on
# trees with thousands of near-identical definitions; copies beyond it still join their group
# through the others.
NEIGHBOURS = 10
# The vector search: rows are split into partitions of about PARTITION_ROWS (spherical k-means on
# a sample), each row is compared exactly with the rows of its PROBES nearest partitions, in
# blocks of BLOCK_ROWS. Linear in the rows for a fixed partition size; below EXACT_ROWS every
# row is compared with every other (bench/dups_scale.py measures both, and LanceDB's ANN index).
PARTITION_ROWS = 1024
PROBES = 3
BLOCK_ROWS = 2048
EXACT_ROWS = 8192
KMEANS_ROUNDS = 6


@dataclass(frozen=True)
class DupSettings:
    """What a dups query compares: the options' values or the defaults."""

    threshold: float
    min_lines: int
    tests: bool

    @classmethod
    def of(cls, options: SearchOptions) -> DupSettings:
        return cls(DEFAULT_THRESHOLD if options.threshold is None else options.threshold,
                   DEFAULT_MIN_LINES if options.min_lines is None else options.min_lines,
                   options.tests)


COLUMNS = ("path", "language", "kind", "symbol", "start_line", "end_line", "text",
           "definition_line", "vector")


def duplicates(store: Store, options: SearchOptions, where: str | None = None) -> list[DupGroup]:
    """The groups of near-duplicate definitions among the chunks matching ``where`` (``--lang``,
    ``--glob``, the scope), most worth merging first, at most ``options.k``."""
    settings = DupSettings.of(options)
    kinds = f"NOT ({sql_in('kind', list(UNNAMED_KINDS))})"
    table = store.chunk_columns(COLUMNS, f"({where}) AND {kinds}" if where else kinds)
    return group_duplicates(Chunks.from_arrow(table), settings)[:options.k]


@dataclass
class Chunks:
    """The chunk rows compared, as columns (one read of many rows; no object per row).
    ``vectors`` holds zeros for a row still without its vector."""

    path: list[str]
    language: list[str]
    kind: list[str]
    symbol: list[str]
    start_line: list[int]
    end_line: list[int]
    text: list[str]
    definition_line: list[int]
    vectors: np.ndarray

    @classmethod
    def from_arrow(cls, table: Any) -> Chunks:
        columns = {name: table.column(name).to_pylist() for name in COLUMNS[:-1]}
        dim = int(table.schema.field("vector").type.list_size)
        return cls(**columns, vectors=vectors_from_arrow(table.column("vector"), dim))

    @classmethod
    def from_rows(cls, rows: Sequence[StoredChunk]) -> Chunks:
        """From rows read one by one (each with its vector)."""
        columns = {name: [getattr(r, name) for r in rows] for name in COLUMNS[:-1]}
        return cls(**columns, vectors=np.stack([r.vector for r in rows]))  # type: ignore[misc]

    def hit(self, rows: Sequence[int], score: float) -> Hit:
        """The definition made of ``rows`` (its pieces, in order) as one location."""
        first, last = rows[0], rows[-1]
        return Hit(self.path[first], self.start_line[first], self.end_line[last],
                   self.symbol[first], self.language[first], self.kind[first], score,
                   "\n".join(self.text[i] for i in rows))


def group_duplicates(chunks: Chunks, settings: DupSettings) -> list[DupGroup]:
    """:func:`duplicates` over chunks already read: every group, best first."""
    by_definition: dict[tuple[str, int], list[int]] = {}
    for i in sorted(range(len(chunks.path)), key=lambda i: (chunks.path[i], chunks.start_line[i])):
        path = chunks.path[i]
        if settings.tests or not is_test_path(path):
            definition = (path, chunks.definition_line[i] or -chunks.start_line[i])
            by_definition.setdefault(definition, []).append(i)
    units = [rows for rows in by_definition.values()
             if chunks.end_line[rows[-1]] - chunks.start_line[rows[0]] + 1 >= settings.min_lines
             and not _OVERLOAD.match(chunks.text[rows[0]])]
    if len(units) < 2:
        return []
    texts = [chunks.text[rows[0]] if len(rows) == 1 else "\n".join(chunks.text[i] for i in rows)
             for rows in units]
    languages = [chunks.language[rows[0]] for rows in units]
    pairs: dict[tuple[int, int], float] = {}
    exact = [f"{lang}\n{' '.join(t.split())}" for t, lang in zip(texts, languages, strict=True)]
    # Renamed copies: the text with every name blanked; computed only for definitions whose
    # text without words and spaces (a cheaper, looser key) another one shares.
    shared = _shared([lang + t.translate(_WORDS_AND_SPACE)
                      for t, lang in zip(texts, languages, strict=True)])
    renamed = [fingerprint(texts[i], languages[i], rename=True) if i in shared else exact[i]
               for i in range(len(units))]
    for keys in (exact, renamed):
        for i, j in _same_key_pairs(keys):
            pairs[(i, j)] = 1.0
    # Every chunk with a vector, labelled with its definition: the pieces of one never pair.
    labels = np.empty(len(chunks.path), dtype=np.int64)
    labels.fill(-1)
    for u, rows in enumerate(units):
        labels[rows] = u
    have = np.flatnonzero((labels >= 0) & chunks.vectors.any(axis=1))
    have = have[np.argsort(labels[have], kind="stable")]
    vectors = _unit_vectors(chunks.vectors[have], labels[have], len(units))
    if len(have) > 1:
        a, b, sims = neighbour_pairs(chunks.vectors[have], settings.threshold,
                                     groups=labels[have])
        for x, y, sim in zip(labels[have][a].tolist(), labels[have][b].tolist(), sims.tolist(),
                             strict=True):
            pair = (x, y) if x < y else (y, x)
            pairs[pair] = max(pairs.get(pair, 0.0), sim)
    return _groups(chunks, units, vectors, pairs, renamed, exact, settings.threshold)


def _unit_vectors(vectors: np.ndarray, labels: np.ndarray, n: int) -> list[np.ndarray | None]:
    """Each definition's vector: the unit mean of its pieces'; None while none has one.
    ``labels`` (the definition of each row) must be sorted."""
    sums = np.zeros((n, vectors.shape[1]), dtype=np.float32)
    if len(labels):
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        sizes = np.diff(np.r_[starts, len(labels)])
        single = starts[sizes == 1]
        sums[labels[single]] = vectors[single]  # most definitions are one chunk
        pieces = np.flatnonzero(np.repeat(sizes > 1, sizes))
        if len(pieces):
            sub = labels[pieces]
            first = np.flatnonzero(np.r_[True, sub[1:] != sub[:-1]])
            sums[sub[first]] = np.add.reduceat(vectors[pieces], first, axis=0)
    norms = np.linalg.norm(sums, axis=1)
    return [sums[u] / norms[u] if norms[u] > 0 else None for u in range(n)]


# --- fingerprints ------------------------------------------------------------------------------

# Words that shape code rather than name things, in the languages cs chunks: kept as they are
# when names are replaced, so a renamed copy must keep its control flow.
_KEYWORDS = frozenset("""
abstract and as assert async await break case catch class const continue def default defer del
do elif else enum except export extends false final finally fn for from func function go goto if
impl import in instanceof interface is lambda let loop match mod mut new nil none not null of or
package pass pub raise return select self static struct super switch this throw throws trait
true try type typeof use var void where while with yield None True False Self
""".split())
# A typing overload declares a signature (and repeats its siblings by design): not code to merge.
_OVERLOAD = re.compile(r"(?:\s*@.*\n)*?\s*@(?:typing\.)?overload\b")
_WORD = re.compile(r"[A-Za-z_$][\w$]*")


def _blank(word: re.Match[str]) -> str:
    """A name as a renamed copy's fingerprint writes it: ``#``; a keyword stays."""
    return word[0] if word[0] in _KEYWORDS else "#"


def fingerprint(text: str, language: str, *, rename: bool) -> str:
    """A key of ``text`` that exact copies share (whitespace aside) or, with ``rename``, that
    renamed copies share too: every name that is not a keyword becomes ``#``, so
    ``def area(w, h): return w * h`` and ``def size(a, b): return a * b`` agree (a "type-2
    clone": the same code up to its identifiers) while another control flow does not."""
    if rename:
        text = _WORD.sub(_blank, text)  # a callback is 2.5x faster than a keyword lookahead
    return f"{language}\n{' '.join(text.split())}"


# Deletes ASCII letters, digits, ``_``, ``$`` and whitespace: what is left (punctuation and
# operators) is a cheap key every renamed copy shares, so only rows sharing it are fingerprinted
# by name.
_WORDS_AND_SPACE = str.maketrans("", "", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789_$ \t\r\n")


def _shared(keys: Sequence[str]) -> set[int]:
    """The positions whose key occurs more than once."""
    count: dict[str, int] = {}
    for key in keys:
        count[key] = count.get(key, 0) + 1
    return {i for i, key in enumerate(keys) if count[key] > 1}


def _same_key_pairs(keys: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs (i < j) with the same key, as a star per key (first-second, first-third ...):
    enough to join them, linear in the keys."""
    first: dict[str, int] = {}
    out = []
    for i, key in enumerate(keys):
        j = first.setdefault(key, i)
        if j != i:
            out.append((j, i))
    return out


# --- the vector search -------------------------------------------------------------------------


def neighbour_pairs(vectors: np.ndarray, threshold: float, *, groups: np.ndarray | None = None,
                    neighbours: int = NEIGHBOURS, partition_rows: int = PARTITION_ROWS,
                    probes: int = PROBES, exact_rows: int = EXACT_ROWS, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of rows of ``vectors`` (unit length) with cosine >= ``threshold``, each row keeping
    its ``neighbours`` best: arrays (a, b, cosine) with a < b. Rows with the same ``groups``
    value (the pieces of one definition) never pair.

    Below ``exact_rows`` rows, every pair is compared. Above, rows are partitioned by spherical
    k-means (about ``partition_rows`` each) and each row is compared with the rows of its
    ``probes`` nearest partitions only: near duplicates sit in the same or neighbouring
    partitions, so this finds nearly all of them in time linear in the rows."""
    n = len(vectors)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if n <= max(exact_rows, 2):
        home = np.zeros(n, dtype=np.int64)
        near = home[:, None]
    else:
        centroids = _kmeans(vectors, max(2, n // partition_rows), seed)
        near = _nearest(vectors, centroids, min(probes, len(centroids)))
        home = near[:, 0]
    found_a, found_b, found_s = [], [], []
    order = np.argsort(home, kind="stable")
    bounds = np.searchsorted(home[order], np.arange(home.max() + 2))
    for part in range(len(bounds) - 1):
        members = order[bounds[part]:bounds[part + 1]]
        if not len(members):
            continue
        queries = np.flatnonzero((near == part).any(axis=1))
        block_m = vectors[members]
        for start in range(0, len(queries), BLOCK_ROWS):
            q = queries[start:start + BLOCK_ROWS]
            sims = vectors[q] @ block_m.T
            hit_q, hit_m = np.nonzero(sims >= threshold)
            if len(hit_q) > 4 * neighbours * len(q):
                # A dense block (many look-alike rows): keep each row's best few here already.
                sims[groups[q][:, None] == groups[members][None, :]] = -np.inf
                keep = min(neighbours, len(members))
                top = np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
                hit_q, hit_m = np.repeat(np.arange(len(q)), keep), top.reshape(-1)
            # Never a row with itself, nor two pieces of one definition.
            ok = (groups[q[hit_q]] != groups[members[hit_m]]) & (sims[hit_q, hit_m] >= threshold)
            hit_q, hit_m = hit_q[ok], hit_m[ok]
            found_a.append(q[hit_q])
            found_b.append(members[hit_m])
            found_s.append(sims[hit_q, hit_m])
    a, b, s = np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_s)
    if not len(a):
        return a, b, s
    return _top_pairs(a, b, s, neighbours)


def _top_pairs(a: np.ndarray, b: np.ndarray, s: np.ndarray, neighbours: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``neighbours`` best candidates (from any partition), as unique pairs a < b."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # Unique pairs first (a pair is found from both ends, and from several partitions).
    pair_key = lo.astype(np.int64) * (int(hi.max()) + 1) + hi
    _, first = np.unique(pair_key, return_index=True)
    lo, hi, s = lo[first], hi[first], s[first]
    # A pair stays when it is among the best of either of its rows.
    ends = np.concatenate([lo, hi])
    sims = np.concatenate([s, s])
    idx = np.concatenate([np.arange(len(lo)), np.arange(len(lo))])
    order = np.lexsort((-sims, ends))
    ends_sorted = ends[order]
    starts = np.searchsorted(ends_sorted, ends_sorted, side="left")
    rank = np.arange(len(order)) - starts
    kept = np.unique(idx[order][rank < neighbours])
    return lo[kept], hi[kept], s[kept]


def _kmeans(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` unit centroids of ``vectors`` by spherical k-means on a sample of them."""
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(len(vectors), size=min(len(vectors), k * 64), replace=False)]
    centroids = sample[rng.choice(len(sample), size=k, replace=False)].copy()
    for _ in range(KMEANS_ROUNDS):
        assign = _nearest(sample, centroids, 1)[:, 0]
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, sample)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        filled = norms[:, 0] > 0
        centroids[filled] = sums[filled] / norms[filled]
    return centroids


def _nearest(vectors: np.ndarray, centroids: np.ndarray, probes: int) -> np.ndarray:
    """For each row, its ``probes`` nearest centroids, nearest first (in blocks: bounded
    memory)."""
    out = np.empty((len(vectors), probes), dtype=np.int64)
    for start in range(0, len(vectors), 16384):
        sims = vectors[start:start + 16384] @ centroids.T
        top = np.argpartition(-sims, probes - 1, axis=1)[:, :probes] if probes < sims.shape[1] \
            else np.tile(np.arange(sims.shape[1]), (len(sims), 1))
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out[start:start + len(sims)] = np.take_along_axis(top, order, axis=1)
    return out


# --- groups ------------------------------------------------------------------------------------


def _groups(chunks: Chunks, units: Sequence[list[int]], vectors: Sequence[np.ndarray | None],
            pairs: dict[tuple[int, int], float], renamed: Sequence[str], exact: Sequence[str],
            threshold: float) -> list[DupGroup]:
    """Groups from ``pairs``, strongest first. Copies (the same :func:`fingerprint`) always
    join; otherwise two groups join only when their centroids are as similar as the threshold
    asks of a pair too, so a chain of pairs each just above it (a family of look-alike builder
    methods) does not become one group. A group's similarity is the mean of its pairs'."""
    parent = list(range(len(units)))
    sums: dict[int, np.ndarray] = {i: v for i, v in enumerate(vectors) if v is not None}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in sorted(pairs, key=lambda pair: -pairs[pair]):
        ri, rj = root(i), root(j)
        if ri == rj:
            continue
        a, b = sums.get(ri), sums.get(rj)
        if renamed[i] != renamed[j] and a is not None and b is not None and \
                float(a @ b) < threshold * float(np.linalg.norm(a) * np.linalg.norm(b)):
            continue
        parent[rj] = ri
        if b is not None:
            sums[ri] = b if a is None else a + b
    members: dict[int, list[int]] = {}
    for u in sorted({u for pair in pairs for u in pair}):
        members.setdefault(root(u), []).append(u)
    out = []
    for group in members.values():
        if len(group) < 2:
            continue
        group.sort()
        sims = np.eye(len(group))
        for x, i in enumerate(group):
            for y in range(x + 1, len(group)):
                j = group[y]
                vi, vj = vectors[i], vectors[j]
                sim = (1.0 if renamed[i] == renamed[j] else
                       float(vi @ vj) if vi is not None and vj is not None else np.nan)
                sims[x, y] = sims[y, x] = sim
        off = sims[~np.eye(len(group), dtype=bool)]
        similarity = float(np.nanmean(off)) if not np.isnan(off).all() else 1.0
        best = np.nanmax(np.where(np.eye(len(group), dtype=bool), np.nan, sims), axis=1)
        kind = ("exact" if len({exact[i] for i in group}) == 1
                else "renamed" if len({renamed[i] for i in group}) == 1 else "similar")
        sizes = [chunks.end_line[units[i][-1]] - chunks.start_line[units[i][0]] + 1
                 for i in group]
        out.append(DupGroup(min(similarity, 1.0), kind, sum(sizes) - max(sizes),
                            tuple(chunks.hit(units[i], min(float(best[x]), 1.0))
                                  for x, i in enumerate(group))))
    out.sort(key=lambda g: (-g.similarity * g.lines, g.locations[0].path,
                            g.locations[0].start_line))
    return out

"""`cs dups`: the grouping itself (synthetic vectors and rows), then the real CLI on a small tree
indexed with the tiny model (exact and renamed copies are found by their text, whatever the
vectors say), a partial index, the warm server, and real meaning with MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codesearch.query.dups import (
    DEFAULT_MIN_LINES,
    DEFAULT_THRESHOLD,
    Chunks,
    DupSettings,
    fingerprint,
    group_duplicates,
    neighbour_pairs,
)
from codesearch.store.records import StoredChunk
from tests.support.cli import cs

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")

AREA = '''\
def polygon_area(points):
    total = 0.0
    for i, (x, y) in enumerate(points):
        nx, ny = points[(i + 1) % len(points)]
        total += x * ny - nx * y
    return abs(total) / 2
'''
RENAMED = '''\
def shoelace(vertices):
    acc = 0.0
    for k, (a, b) in enumerate(vertices):
        na, nb = vertices[(k + 1) % len(vertices)]
        acc += a * nb - na * b
    return abs(acc) / 2
'''
OTHER = '''\
def load_settings(path):
    settings = {}
    with open(path) as handle:
        for line in handle:
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings
'''
SHORT = "def twice(x):\n    return 2 * x\n"
GO = '''\
package geo

func Area(points [][2]float64) float64 {
\ttotal := 0.0
\tfor i, p := range points {
\t\tq := points[(i+1)%len(points)]
\t\ttotal += p[0]*q[1] - q[0]*p[1]
\t}
\treturn total / 2
}
'''


def make_tree(root: Path) -> Path:
    files = {
        "src/geometry.py": AREA + "\n\n" + OTHER,
        "src/shapes/area.py": "import math\n\n\n" + AREA,
        "src/metrics.py": RENAMED,
        "src/tiny.py": SHORT,
        "src/more.py": SHORT.replace("twice", "double"),
        "tests/test_geometry.py": AREA,
        "go/area.go": GO,
        "go/copy.go": GO.replace("Area", "Surface"),
        # Typing overloads repeat each other by design: never a group.
        "src/typed.py": "from typing import overload\n\n\n" + "\n\n".join(
            f"@overload\ndef parse(\n    value: {t},\n    strict: bool = False,\n"
            f"    base: int = 10,\n) -> {t}: ..." for t in ("int", "str")),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def chunk(path: str, start: int, end: int, text: str, vector: list[float],
          definition_line: int = 0, language: str = "python") -> StoredChunk:
    v = np.asarray(vector, dtype=np.float32)
    return StoredChunk(f"{path}:{start}", path, language, "function", f"f{start}", start, end,
                       text, "h", vector=v / np.linalg.norm(v), definition_line=definition_line)


# --- the grouping ------------------------------------------------------------------------------


def test_the_cli_help_names_the_defaults() -> None:
    help_text = " ".join(cs("dups", "--help").stdout.split())
    assert f"(default: {DEFAULT_THRESHOLD})" in help_text
    assert f"(default: {DEFAULT_MIN_LINES})" in help_text


def test_partitioned_search_finds_what_the_exact_one_finds() -> None:
    rng = np.random.default_rng(1)
    n, dim = 5_000, 32
    base = rng.normal(size=(n, dim)).astype(np.float32)
    # 300 planted near duplicates of the first 300 rows (cosine about .95).
    base[n - 300:] = base[:300] + 0.19 * rng.normal(size=(300, dim)).astype(np.float32)
    vectors = base / np.linalg.norm(base, axis=1, keepdims=True)
    groups = np.arange(n)
    groups[1] = groups[0]  # rows 0 and 1 are pieces of one definition: never a pair
    vectors[1] = vectors[0]
    exact = neighbour_pairs(vectors, 0.85, groups=groups, exact_rows=n)
    fast = neighbour_pairs(vectors, 0.85, groups=groups, exact_rows=0, partition_rows=512)
    want = {(int(a), int(b)) for a, b in zip(exact[0], exact[1], strict=True)}
    got = {(int(a), int(b)) for a, b in zip(fast[0], fast[1], strict=True)}
    assert len(want) >= 290 and (0, 1) not in want | got
    assert got <= want and len(got) >= 0.97 * len(want)
    assert np.all(fast[2] >= 0.85) and np.all(fast[0] < fast[1])


def test_groups_join_pieces_and_copies_and_do_not_chain() -> None:
    settings = DupSettings(threshold=0.9, min_lines=1, tests=False)
    a = [1.0, 0.0, 0.0]
    rows = [
        # One long definition in two pieces with equal vectors: one location, never a pair.
        chunk("long.py", 1, 40, "x = 1", a, definition_line=1),
        chunk("long.py", 41, 80, "x = 1", a, definition_line=1),
        # A chain: b~c and c~d at .95, b~d at .80: b and c group, d stays out.
        chunk("b.py", 1, 5, "def b(): pass", [0.0, 1.0, 0.0]),
        chunk("c.py", 1, 5, "def c(): return 1", [0.0, 0.95, 0.3122]),
        chunk("d.py", 1, 5, "def d(): return 2", [0.0, 0.80, 0.6]),
        # Test code is left out unless asked for.
        chunk("tests/test_b.py", 1, 5, "def b(): pass", [0.0, 1.0, 0.0]),
    ]
    groups = group_duplicates(Chunks.from_rows(rows), settings)
    assert [[h.path for h in g.locations] for g in groups] == [["b.py", "c.py"]]
    assert groups[0].kind == "similar" and groups[0].similarity == pytest.approx(0.95, abs=1e-3)
    with_tests = group_duplicates(Chunks.from_rows(rows), DupSettings(0.9, 1, tests=True))
    assert [h.path for h in with_tests[0].locations] == ["b.py", "c.py", "tests/test_b.py"]
    assert with_tests[0].locations[2].score == pytest.approx(1.0)


def test_fingerprints_tell_exact_and_renamed_copies() -> None:
    assert fingerprint(AREA, "python", rename=False) == fingerprint(
        AREA.replace("    ", "\t"), "python", rename=False)
    assert fingerprint(AREA, "python", rename=False) != fingerprint(RENAMED, "python",
                                                                     rename=False)
    assert fingerprint(AREA, "python", rename=True) == fingerprint(RENAMED, "python",
                                                                    rename=True)
    # Another control flow, or another language, is not a renamed copy.
    assert fingerprint(AREA, "python", rename=True) != fingerprint(
        AREA.replace("for i,", "while i,"), "python", rename=True)
    assert fingerprint(AREA, "python", rename=True) != fingerprint(AREA, "ruby", rename=True)


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def dups_repo(tmp_path: Path, tiny_model_dir: Path) -> Path:
    root = make_tree(tmp_path / "repo")
    result = cs("index", str(root), "--model", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    return root


def dups_json(*args: str) -> list[dict]:
    result = cs("dups", *args, "--json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def places(groups: list[dict]) -> list[list[str]]:
    return [[f"{loc['path']}:{loc['start_line']}" for loc in g["locations"]] for g in groups]


def test_dups_finds_exact_and_renamed_copies(dups_repo: Path) -> None:
    # Threshold 1: only copies (the tiny model's vectors mean nothing).
    groups = dups_json(str(dups_repo), "--threshold", "1")
    assert places(groups) == [  # most lines to save first
        ["src/geometry.py:1", "src/metrics.py:1", "src/shapes/area.py:4"],
        ["go/area.go:3", "go/copy.go:3"],
    ]
    py, go = groups
    assert go["kind"] == "renamed" and go["similarity"] == 1.0 and go["lines"] == 8
    assert py["kind"] == "renamed" and py["lines"] == 12
    assert set(py["locations"][0]) == {"path", "start_line", "end_line", "symbol", "language"}
    assert [loc["symbol"] for loc in py["locations"]] == ["polygon_area", "shoelace",
                                                          "polygon_area"]
    assert set(groups[0]) == {"similarity", "kind", "lines", "locations"}

    # Test code when asked; short definitions with --min-lines; the filters.
    with_tests = places(dups_json(str(dups_repo), "--threshold", "1", "--tests"))
    assert "tests/test_geometry.py:1" in with_tests[0]
    short = places(dups_json(str(dups_repo), "--threshold", "1", "--min-lines", "2"))
    assert ["src/more.py:1", "src/tiny.py:1"] in short
    assert places(dups_json(str(dups_repo), "--threshold", "1", "--lang", "go")) == [
        ["go/area.go:3", "go/copy.go:3"]]
    exact = dups_json(str(dups_repo), "--threshold", "1", "--glob", "!metrics.py",
                      "--lang", "python")
    assert places(exact) == [["src/geometry.py:1", "src/shapes/area.py:4"]]
    assert exact[0]["kind"] == "exact"
    # A directory inside the root limits it, like find; -k limits the groups.
    assert places(dups_json(str(dups_repo / "go"), "--threshold", "1")) == [
        ["go/area.go:3", "go/copy.go:3"]]
    assert len(dups_json(str(dups_repo), "--threshold", "1", "-k", "1")) == 1

    grep = cs("dups", str(dups_repo), "--threshold", "1", "--grep")
    assert grep.exit_code == 0
    assert grep.stdout.splitlines()[3].endswith("go/area.go:3:Area [group 2, 1.000]")
    rich = cs("dups", str(dups_repo), "--threshold", "1")
    assert rich.exit_code == 0 and "#2  renamed  similarity 1.000" in rich.stdout
    none = cs("dups", str(dups_repo / "src" / "shapes"), "--threshold", "1")
    assert none.exit_code == 1 and "No duplicates." in none.stderr
    bad = cs("dups", str(dups_repo), "--threshold", "1.5")
    assert bad.exit_code == 2 and "--threshold must be in (0, 1]" in bad.stderr


def test_dups_on_an_index_without_vectors_yet(tmp_path: Path, tiny_model_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from codesearch.config import resolve_index_uri
    from codesearch.index.indexer import Indexer, IndexOptions
    from codesearch.store.store import Store

    monkeypatch.setenv("CS_PRECISION", "fp32")
    root = make_tree(tmp_path / "repo")
    Indexer(root, Store.open(resolve_index_uri(root)),
            IndexOptions(model=str(tiny_model_dir), embed=False)).run()
    result = cs("dups", str(root), "--json", "--no-server")
    assert result.exit_code == 0, result.output
    assert places(json.loads(result.stdout)) == [
        ["src/geometry.py:1", "src/metrics.py:1", "src/shapes/area.py:4"],
        ["go/area.go:3", "go/copy.go:3"],
    ]
    assert "vectors for 0 of" in result.stderr


def test_dups_through_the_server_equals_in_process(dups_repo: Path) -> None:
    from tests.test_server import Served

    served = Served([dups_repo])
    try:
        for args in (("--json",), ("--grep", "--tests"), ("--json", "--lang", "go")):
            via = cs("dups", str(dups_repo), "--threshold", "1", *args)
            local = cs("dups", str(dups_repo), "--threshold", "1", *args, "--no-server")
            assert (via.exit_code, via.stdout, via.stderr) == (local.exit_code, local.stdout,
                                                               local.stderr)
        assert served.answered() == 3
    finally:
        served.server.stop()


# --- meaning (MiniLM) --------------------------------------------------------------------------

MEAN_LOOP = '''\
def average_of(values):
    count = 0
    total = 0.0
    for value in values:
        total += value
        count += 1
    if count == 0:
        raise ValueError("no values")
    return total / count
'''
MEAN_SUM = '''\
def mean_value(numbers):
    numbers = list(numbers)
    if not numbers:
        raise ValueError("no numbers")
    total = sum(numbers)
    count = len(numbers)
    return total / count
'''

# MEAN_SUM edited: a parameter and a branch added, a message changed.
EDITED_MEAN = MEAN_SUM.replace(
    "def mean_value(numbers):", "def mean_value(numbers, default=None):").replace(
    '        raise ValueError("no numbers")',
    '        if default is not None:\n            return default\n'
    '        raise ValueError("mean of nothing")')


@pytest.mark.slow
def test_minilm_groups_an_edited_copy_and_not_unrelated_code(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "repo")
    (root / "src" / "stats.py").write_text(MEAN_LOOP + "\n\n" + OTHER.replace("load_settings",
                                                                              "read_config"))
    (root / "src" / "numeric.py").write_text(MEAN_SUM)
    (root / "src" / "compat.py").write_text(EDITED_MEAN)
    result = cs("index", str(root), "--model", "minilm", "--json")
    assert result.exit_code == 0, result.output
    groups = dups_json(str(root), "--lang", "python")
    found = places(groups)
    assert ["src/compat.py:1", "src/numeric.py:1"] in found  # by the vectors alone
    assert ["src/geometry.py:9", "src/stats.py:12"] in found  # load_settings / read_config
    assert all(g["similarity"] >= DEFAULT_THRESHOLD for g in groups)
    # Nothing groups the mean with the polygon area.
    assert not any({"src/stats.py:1", "src/geometry.py:1"} <= set(p) for p in found)

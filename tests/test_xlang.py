"""`cs similar FILE:LINE --lang L` finds the same task written in another language (MiniLM, a few
of the tasks of fixtures/xlang, which bench/xlang_similar.py scores in full)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codesearch.source.chunk import chunk_source
from tests.support.cli import cs

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")
XLANG = Path(__file__).resolve().parent.parent / "fixtures" / "xlang"
FILES = {"python": "tasks.py", "go": "tasks.go", "rust": "tasks.rs", "typescript": "tasks.ts"}
# Tasks by their place in every file: binary search, word frequencies, two sum, roman numerals,
# run-length encoding, Levenshtein distance.
TASKS = (7, 10, 15, 18, 23, 27)


def functions(language: str) -> list[str]:
    text = (XLANG / FILES[language]).read_text()
    return [c.text for c in chunk_source(text, FILES[language], language)
            if c.kind == "function"]


@pytest.mark.slow
def test_similar_across_languages_finds_the_twin(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    starts: dict[str, list[int]] = {}
    for language, name in FILES.items():
        picked = [functions(language)[i] for i in TASKS]
        head = "package xlang\n\n" if language == "go" else ""
        text = head + "\n\n".join(picked) + "\n"
        (root / name).write_text(text)
        lines = text.splitlines()
        starts[language] = [lines.index(f.splitlines()[0]) + 1 for f in picked]
    result = cs("index", str(root), "--model", "minilm", "--json")
    assert result.exit_code == 0, result.output

    for source, target in (("python", "go"), ("python", "rust"), ("go", "python"),
                           ("rust", "typescript")):
        for k, start in enumerate(starts[source]):
            result = cs("similar", f"{root / FILES[source]}:{start + 2}", "--path", str(root),
                        "--lang", target, "--json", "-k", "3")
            assert result.exit_code == 0, result.output
            hits = json.loads(result.stdout)
            assert {h["language"] for h in hits} == {target}
            assert (hits[0]["path"], hits[0]["start_line"]) == (FILES[target], starts[target][k]), (
                source, target, k, hits[0]["symbol"])

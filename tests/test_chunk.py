"""The chunker: exact symbols and spans per language, splitting, fallbacks, embedding text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from codesearch.documents import content_hash, embedding_text, row_tasks
from codesearch.source.chunk import (
    CHUNKER_VERSION,
    Chunk,
    chunk_source,
    estimate_tokens,
)
from codesearch.source.discover import Discovery, read_source
from codesearch.source.languages import language_for_path
from codesearch.vocabulary import identifier_words

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# (kind, symbol, start_line, end_line) of every chunk of each fixture file, in order.
EXPECTED: dict[str, list[tuple[str, str, int, int]]] = {
    "python/datatools/__init__.py": [
        ("module", "", 1, 3),
    ],
    "python/datatools/cli.py": [
        ("module", "", 1, 6),
        ("function", "build_parser", 9, 13),
        ("module", "", 16, 19),
    ],
    "python/datatools/dates.py": [
        ("module", "", 1, 5),
        ("function", "parse_date", 8, 15),
        ("function", "days_between", 18, 19),
    ],
    "python/datatools/hashing.py": [
        ("module", "", 1, 5),
        ("function", "sha256_of_file", 8, 14),
    ],
    "python/datatools/net.py": [
        ("module", "", 1, 8),
        ("function", "fetch_json", 11, 22),
    ],
    "python/datatools/smoothing.py": [
        ("module", "", 1, 1),
        ("function", "rolling_mean", 4, 16),
        ("function", "clamp", 19, 21),
    ],
    "python/datatools/stats.py": [
        ("module", "", 1, 10),
        ("function", "mean_of_column", 13, 30),
        ("function", "binomial", 33, 38),  # with its decorator
        ("class", "RunningStats", 41, 47),  # decorator, docstring and fields
        ("method", "RunningStats.push", 49, 53),
        ("method", "RunningStats.variance", 55, 59),
    ],
    "python/datatools/text.py": [
        ("module", "", 1, 4),
        ("function", "slugify", 7, 11),
        ("function", "truncate_words", 14, 19),
    ],
    "python/datatools/timeseries.py": [
        ("module", "", 1, 1),
        ("function", "moving_average", 4, 16),
        ("function", "resample_daily", 19, 24),
    ],
    "javascript/src/cart.js": [
        ("module", "", 1, 3),
        ("class", "ShoppingCart", 5, 9),  # JSDoc, header, field
        ("method", "ShoppingCart.constructor", 11, 13),
        ("method", "ShoppingCart.addItem", 15, 20),
        ("method", "ShoppingCart.total", 22, 28),
        ("method", "ShoppingCart.describe", 30, 30),  # arrow-function field
    ],
    "javascript/src/format.js": [
        ("function", "formatPrice", 3, 5),
        ("function", "debounce", 7, 13),  # const debounce = (...) => {...}
        ("function", "range", 15, 17),  # generator
        ("module", "", 19, 19),
    ],
    "typescript/src/components/Counter.tsx": [
        ("module", "", 1, 1),
        ("interface", "CounterProps", 3, 6),
        ("function", "useToggle", 8, 11),
        ("function", "Counter", 13, 20),
        ("module", "", 22, 22),
    ],
    "typescript/src/queue.ts": [
        ("module", "", 1, 1),
        ("enum", "Priority", 3, 7),
        ("interface", "Job", 9, 13),
        ("module", "", 15, 15),
        ("class", "JobQueue", 17, 20),
        ("method", "JobQueue.constructor", 22, 24),
        ("method", "JobQueue.enqueue", 26, 30),
        ("method", "JobQueue.drain", 32, 43),
        ("function", "backoff", 47, 49),  # inside `export namespace Retry`
    ],
    "go/cmd/server/main.go": [
        ("module", "", 1, 7),
        ("struct", "healthResponse", 9, 11),
        ("function", "healthHandler", 13, 16),
        ("function", "main", 18, 21),
    ],
    "go/stack/stack.go": [
        ("module", "", 1, 7),
        ("struct", "Stack", 9, 12),
        ("function", "New", 14, 17),
        ("method", "(*Stack).Push", 19, 22),
        ("method", "(*Stack).Pop", 24, 32),
        ("method", "Stack.Len", 34, 37),
        ("interface", "Peeker", 39, 42),
    ],
    "rust/src/lib.rs": [
        ("module", "", 1, 3),
        ("struct", "Matrix", 5, 11),  # doc comment and #[derive]
        ("method", "impl Matrix.zeros", 14, 17),
        ("method", "impl Matrix.transpose", 19, 27),
        ("trait_impl", "impl fmt::Display for Matrix.fmt", 31, 36),  # the trait documents it
        ("trait", "Shape", 39, 41),  # required method signatures are the trait's fields
        ("method", "Shape.describe", 43, 45),
        ("enum", "Norm", 48, 51),
        ("function", "identity", 53, 59),
        ("module", "", 63, 63),
        ("function", "transpose_twice_is_identity", 65, 69),
    ],
    "java/src/main/java/com/example/inventory/Inventory.java": [
        ("module", "", 1, 5),
        ("class", "Inventory", 7, 12),
        ("method", "Inventory.Inventory", 14, 16),
        ("method", "Inventory.restock", 18, 24),
        ("method", "Inventory.level", 26, 29),  # with @Deprecated
        ("method", "Inventory.isLow", 31, 33),
        ("enum", "Inventory.Unit", 35, 37),
        ("method", "Inventory.Unit.factor", 39, 41),
    ],
    "java/src/main/java/com/example/inventory/Repository.java": [
        ("module", "", 1, 3),
        ("interface", "Repository", 5, 9),
        ("method", "Repository.exists", 11, 13),
    ],
    "c/src/ringbuf.c": [
        ("module", "", 1, 5),
        ("struct", "stats", 7, 10),
        ("module", "", 12, 12),
        ("function", "ringbuf_init", 14, 25),
        ("function", "ringbuf_push", 27, 37),
        ("function", "status_name", 39, 43),
    ],
    "c/src/ringbuf.h": [
        ("module", "", 1, 4),
        ("struct", "ringbuf_t", 6, 12),  # typedef struct {...} ringbuf_t inside the guard
        ("module", "", 14, 15),
    ],
    "cpp/src/geometry.cpp": [
        ("module", "", 1, 1),
        ("function", "distance", 5, 7),
        ("method", "Polygon.perimeter", 9, 16),  # out-of-class definition
    ],
    "cpp/src/geometry.hpp": [
        ("module", "", 1, 4),
        ("struct", "Point", 8, 12),
        ("class", "Polygon", 14, 16),
        ("method", "Polygon.Polygon", 17, 17),
        ("class", "Polygon", 19, 19),
        ("method", "Polygon.size", 21, 21),
        ("class", "Polygon", 23, 25),
        ("function", "clamp", 27, 30),  # template
    ],
    "csharp/src/Money.cs": [
        ("struct", "Money", 3, 6),
        ("method", "Money.ToString", 8, 8),
        ("enum", "Rounding", 11, 15),
    ],
    "csharp/src/OrderService.cs": [
        ("module", "", 1, 3),
        ("class", "OrderLine", 7, 8),
        ("interface", "IOrderService", 10, 13),
        ("class", "OrderService", 15, 21),  # doc comment and [Serializable]
        ("method", "OrderService.OrderService", 23, 26),
        ("method", "OrderService.Total", 28, 35),
        ("method", "OrderService.Sum", 37, 38),
    ],
    "ruby/lib/billing/formatting.rb": [
        ("method", "Billing.Formatting.money", 3, 5),
        ("function", "print_invoice", 9, 11),
    ],
    "ruby/lib/billing/invoice.rb": [
        ("module", "", 1, 3),
        ("class", "Billing.Invoice", 6, 10),
        ("method", "Billing.Invoice.initialize", 12, 15),
        ("method", "Billing.Invoice.add_line", 17, 21),
        ("method", "Billing.Invoice.total", 23, 26),
        ("method", "Billing.Invoice.from_hash", 28, 32),
    ],
    "php/src/UserRepository.php": [
        ("module", "", 1, 7),
        ("class", "UserRepository", 9, 14),
        ("method", "UserRepository.__construct", 16, 18),
        ("method", "UserRepository.findByEmail", 20, 27),
        ("method", "UserRepository.count", 29, 33),  # with #[Deprecated]
        ("interface", "Cache", 36, 39),
        ("function", "normalize_email", 41, 44),
    ],
    "kotlin/src/main/kotlin/library/Library.kt": [
        ("module", "", 1, 3),
        ("class", "Book", 5, 6),  # KDoc the grammar parks in the import list
        ("interface", "Catalog", 8, 10),
        ("class", "Library", 12, 13),
        ("method", "Library.lend", 15, 20),
        ("method", "Library.overdue", 22, 23),
        ("object", "Library.Companion", 25, 26),
        ("method", "Library.Companion.empty", 28, 30),
        ("object", "Isbn", 34, 34),
        ("method", "Isbn.isValid", 35, 35),
        ("function", "main", 38, 40),
    ],
    "swift/Sources/Geometry/Shapes.swift": [
        ("module", "", 1, 1),
        ("protocol", "Shape", 3, 7),
        ("struct", "Circle", 9, 11),
        ("method", "Circle.area", 13, 15),
        ("class", "Canvas", 18, 19),
        ("method", "Canvas.init", 21, 21),
        ("method", "Canvas.add", 23, 27),  # with @discardableResult
        ("method", "Canvas.totalArea", 31, 33),  # from `extension Canvas`
        ("enum", "Unit", 36, 39),
        ("function", "describe", 41, 43),
    ],
    "bash/bin/backup": [
        ("module", "", 1, 2),
        ("function", "backup_dir", 4, 6),
        ("module", "", 8, 8),
    ],
    "bash/scripts/deploy.sh": [
        ("module", "", 1, 5),
        ("function", "log", 7, 9),
        ("function", "deploy", 11, 16),  # `function deploy {` with its comment
        ("module", "", 18, 19),
    ],
}

LANGUAGE_OF = {
    "python": "python",
    "javascript": "javascript",
    "typescript": "typescript",
    "go": "go",
    "rust": "rust",
    "java": "java",
    "c": "c",
    "cpp": "cpp",
    "csharp": "csharp",
    "ruby": "ruby",
    "php": "php",
    "kotlin": "kotlin",
    "swift": "swift",
    "bash": "bash",
}


def _outline(chunks: list[Chunk]) -> list[tuple[str, str, int, int]]:
    """What a chunking test compares: (kind, symbol, first line, last line) per chunk."""
    return [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks]


def _chunks_of(fixture_path: str, max_tokens: int = 512) -> list[Chunk]:
    path = FIXTURES / fixture_path
    rel = fixture_path.split("/", 1)[1]
    language = language_for_path(rel, path.read_text().split("\n", 1)[0])
    return chunk_source(path.read_text(), rel, language, max_tokens=max_tokens)


@pytest.mark.parametrize("fixture_path", sorted(EXPECTED))
def test_symbols_and_spans(fixture_path: str) -> None:
    chunks = _chunks_of(fixture_path)
    assert _outline(chunks) == EXPECTED[fixture_path]
    repo = fixture_path.split("/", 1)[0]
    expected_language = "tsx" if fixture_path.endswith(".tsx") else LANGUAGE_OF[repo]
    assert {c.language for c in chunks} == {expected_language}


def test_chunk_texts_are_exactly_their_lines_across_all_fixtures() -> None:
    for repo in sorted(p for p in FIXTURES.iterdir() if p.is_dir() and p.name != "ignore-rules"):
        for source in Discovery(repo):
            text = read_source(source)
            lines = text.replace("\r\n", "\n").split("\n")
            chunks = chunk_source(text, source.rel, source.language)
            previous_end = 0
            for chunk in chunks:
                assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
                assert chunk.text == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
                assert chunk.text.strip() and lines[chunk.start_line - 1].strip()
                assert lines[chunk.end_line - 1].strip()
                if chunk.kind != "window":
                    assert chunk.start_line > previous_end, (source.rel, chunk)  # no overlap
                previous_end = chunk.end_line
                assert chunk.path == source.rel


def test_decorators_and_doc_comments_belong_to_their_definition() -> None:
    source = (
        "/** A service. */\n"
        "@Injectable()\n"
        "export class Service {\n"
        "  /** Loads it. */\n"
        "  @Memo()\n"
        "  load(): void {}\n"
        "}\n"
        "\n"
        "// unrelated note\n"
        "\n"
        "function helper() {}\n"
    )
    chunks = chunk_source(source, "svc.ts", "typescript")
    spans = _outline(chunks)
    assert spans == [
        ("class", "Service", 1, 3),
        ("method", "Service.load", 4, 6),
        # the note is not the function's: a blank line separates them (and a lone comment
        # line is not worth a chunk)
        ("function", "helper", 11, 11),
    ]


def test_trailing_comment_is_not_taken_by_the_next_definition() -> None:
    source = "x = 1  # the answer\ndef f():\n    return x\n"
    chunks = chunk_source(source, "a.py", "python")
    assert [(c.kind, c.start_line, c.end_line) for c in chunks] == [
        ("module", 1, 1),
        ("function", 2, 3),
    ]


def _long_function(statements: int) -> str:
    body = []
    for i in range(statements):
        if i == 40:
            # one statement over three lines: no piece may start inside it
            body.append("    total += combine(\n        first_argument_value,\n        i,\n    )")
        else:
            body.append(f"    total += compute_value(index_{i}, other_argument_{i})")
    return (
        "def big(first_argument_value):\n    total = 0\n" + "\n".join(body) + "\n    return total\n"
    )


def test_long_definition_is_split_at_statement_boundaries() -> None:
    text = _long_function(120)
    lines = text.split("\n")
    chunks = chunk_source(text, "pkg/big.py", "python", max_tokens=200)
    assert len(chunks) > 3
    assert {(c.kind, c.symbol) for c in chunks} == {("function", "big")}
    assert chunks[0].start_line == 1 and chunks[0].header == ""
    assert chunks[-1].end_line == len(lines) - 1
    assert {c.definition_line for c in chunks} == {1}  # one definition, whichever piece matches
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start_line == before.end_line + 1  # contiguous, no gaps, no overlap
        assert not lines[after.start_line - 1].startswith("        ")  # not mid-statement
    for i, chunk in enumerate(chunks):
        assert estimate_tokens(embedding_text(chunk)) <= 200
        if i:
            assert chunk.header == (
                f"(part {i + 1}/{len(chunks)} of function big) def big(first_argument_value):"
            )


def test_only_pieces_of_a_split_definition_share_a_definition_line() -> None:
    text = "def small(x):\n    return x\n\n\n" + _long_function(120).replace("def big", "def big2")
    chunks = chunk_source(text, "pkg/two.py", "python", max_tokens=200)
    assert chunks[0].symbol == "small" and chunks[0].definition_line == 0
    assert {c.definition_line for c in chunks[1:]} == {5} and len(chunks) > 3


def test_the_budget_is_a_parameter() -> None:
    text = _long_function(120)
    default = chunk_source(text, "big.py", "python")
    small = chunk_source(text, "big.py", "python", max_tokens=200)
    assert len(small) > len(default) >= 2
    assert all(estimate_tokens(embedding_text(c)) <= 512 for c in default)


def test_long_top_level_code_is_grouped_within_the_budget() -> None:
    text = "\n".join(f"SETTING_{i} = compute_default({i}, 'value number {i}')" for i in range(200))
    chunks = chunk_source(text + "\n", "settings.py", "python", max_tokens=150)
    assert len(chunks) > 5
    assert {c.kind for c in chunks} == {"module"}
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 200
    assert all(estimate_tokens(embedding_text(c)) <= 150 for c in chunks)


def test_markdown_is_split_by_heading() -> None:
    text = (
        "Intro line before any heading.\n"
        "\n"
        "# Guide\n"
        "Welcome.\n"
        "\n"
        "## Install\n"
        "```sh\n"
        "# not a heading: a shell comment\n"
        "pip install thing\n"
        "```\n"
        "### Linux\n"
        "Use apt.\n"
        "## Usage\n"
        "Run it.\n"
    )
    chunks = chunk_source(text, "docs/guide.md", "markdown")
    assert _outline(chunks) == [
        ("doc", "", 1, 1),
        ("doc", "Guide", 3, 4),
        ("doc", "Guide > Install", 6, 10),
        ("doc", "Guide > Install > Linux", 11, 12),
        ("doc", "Guide > Usage", 13, 14),
    ]
    assert {c.language for c in chunks} == {"markdown"}


def test_restructuredtext_is_split_by_underlined_titles() -> None:
    text = (
        "=====\n"
        "Guide\n"
        "=====\n"
        "\n"
        "Intro.\n"
        "\n"
        "FAQ\n"
        "---\n"
        "\n"
        "How do I retry?\n"
        "~~~~~~~~~~~~~~~\n"
        "\n"
        "Pass ``retries=3``::\n"
        "\n"
        "    ---- not a title, a literal block\n"
        "\n"
        "Why is it slow?\n"
        "~~~~~~~~~~~~~~~\n"
        "Because.\n"
        "\n"
        "Install\n"
        "-------\n"
        "pip.\n"
    )
    chunks = chunk_source(text, "docs/faq.rst", "restructuredtext")
    assert _outline(chunks) == [
        ("doc", "Guide", 1, 5),
        ("doc", "Guide > FAQ", 7, 8),
        ("doc", "Guide > FAQ > How do I retry?", 10, 15),
        ("doc", "Guide > FAQ > Why is it slow?", 17, 19),
        ("doc", "Guide > Install", 21, 23),
    ]


def test_asciidoc_is_split_by_titles_outside_blocks() -> None:
    text = "= Guide\n\nIntro.\n\n== Install\n----\n== not a title\n----\n\n=== Linux\napt\n"
    chunks = chunk_source(text, "docs/guide.adoc", language_for_path("docs/guide.adoc"))
    assert _outline(chunks) == [
        ("doc", "Guide", 1, 3),
        ("doc", "Guide > Install", 5, 8),
        ("doc", "Guide > Install > Linux", 10, 11),
    ]
    assert {c.language for c in chunks} == {"asciidoc"}


@pytest.mark.parametrize("path", ["README", "CHANGELOG.txt", "docs/notes.txt", "doc/a/b.txt"])
def test_plain_text_docs_are_doc_chunks(path: str) -> None:
    chunks = chunk_source("Changes\n=======\n\n1.0\n---\n- first\n", path, None)
    assert _outline(chunks) == [("doc", "Changes", 1, 2), ("doc", "Changes > 1.0", 4, 6)]
    plain = chunk_source("no titles here\njust text\n", path, None)
    assert _outline(plain) == [("doc", "", 1, 2)]


@pytest.mark.parametrize("path", ["data/x.txt", "requirements.txt", "notes.cfg"])
def test_other_text_stays_windows(path: str) -> None:
    chunks = chunk_source("Title\n=====\ntext\n", path, None)
    assert {c.kind for c in chunks} == {"window"}


def test_doc_rows_hash_their_task() -> None:
    """A doc chunk's rows are embedded with another document prefix than code (qa, code2nl):
    their hashes name the task, so no cached code-side vector is ever reused for them."""
    doc = chunk_source("# Install\npip install thing\n", "README.md", "markdown")[0]
    text = embedding_text(doc)
    assert text == "README.md | Install\nInstall\npip install thing"
    assert content_hash(doc) == hashlib.sha256(f"qa\n{text}".encode()).hexdigest()
    assert content_hash(doc, "code2nl") == hashlib.sha256(f"code2nl\n{text}".encode()).hexdigest()
    assert row_tasks(doc, "jina-code-v1") == ("qa", "code2nl")
    assert row_tasks(doc, "none+words5") == ("qa",)
    code = chunk_source("def f():\n    return 1\n", "a.py", "python")[0]
    assert row_tasks(code, "jina-code-v1") == ("nl2code",)
    assert content_hash(code) == hashlib.sha256(embedding_text(code).encode()).hexdigest()


def test_text_without_grammar_becomes_overlapping_windows() -> None:
    text = "\n".join(f"line {i}: some configuration value = {i * 7}" for i in range(1, 201))
    chunks = chunk_source(text, "notes.cfg", None)
    assert all(c.kind == "window" and c.language == "text" and c.symbol == "" for c in chunks)
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 200
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.start_line < after.start_line <= before.end_line  # overlap, progress
        assert before.end_line - after.start_line + 1 <= 5
    assert all(c.end_line - c.start_line + 1 <= 60 for c in chunks)
    assert all(estimate_tokens(embedding_text(c)) <= 512 for c in chunks)


def test_unknown_language_and_empty_text() -> None:
    assert chunk_source("", "a.py", "python") == []
    assert chunk_source("\n\n   \n", "a.txt", None) == []
    chunks = chunk_source("PROGRAM-ID. HELLO.\n", "hello.cob", "cobol")
    assert [(c.kind, c.language, c.start_line, c.end_line) for c in chunks] == [
        ("window", "cobol", 1, 1)
    ]


def test_syntax_errors_do_not_lose_the_rest_of_the_file() -> None:
    text = "def broken(:\n    pass\n\n\ndef fine():\n    return 1\n"
    chunks = chunk_source(text, "bad.py", "python")
    assert ("function", "fine", 5, 6) in _outline(chunks)
    covered = {line for c in chunks for line in range(c.start_line, c.end_line + 1)}
    assert 1 in covered


def test_crlf_line_endings_do_not_change_texts_or_hashes() -> None:
    unix = chunk_source("def f():\n    return 1\n", "a.py", "python")
    dos = chunk_source("def f():\r\n    return 1\r\n", "a.py", "python")
    assert [c.text for c in dos] == ["def f():\n    return 1"]
    assert [content_hash(c) for c in dos] == [content_hash(c) for c in unix]


def test_replacement_characters_keep_spans() -> None:
    text = "# caf\ufffd\ndef price(item):\n    return PRICES[item]\n"
    chunks = chunk_source(text, "legacy.py", "python")
    assert [(c.kind, c.start_line, c.end_line) for c in chunks] == [
        ("module", 1, 1),
        ("function", 2, 3),
    ] or [(c.kind, c.start_line, c.end_line) for c in chunks] == [("function", 1, 3)]


def test_embedding_text_names_file_and_symbol_in_words() -> None:
    chunk = next(c for c in _chunks_of("python/datatools/stats.py") if c.symbol == "mean_of_column")
    text = embedding_text(chunk)
    first, rest = text.split("\n", 1)
    assert first == "datatools/stats.py | function mean_of_column (mean of column)"
    assert rest == chunk.text
    assert content_hash(chunk) == hashlib.sha256(text.encode()).hexdigest()
    moved = Chunk(**{**chunk.__dict__, "path": "other/stats.py"})
    assert content_hash(moved) != content_hash(chunk)


def test_type_chunks_list_their_members() -> None:
    chunk = next(c for c in _chunks_of("python/datatools/stats.py") if c.kind == "class")
    assert chunk.header == "members: push, variance"
    assert embedding_text(chunk).split("\n")[1] == "members: push, variance"


def test_module_and_window_chunks_have_a_bare_path_line() -> None:
    chunk = _chunks_of("python/datatools/stats.py")[0]
    assert embedding_text(chunk).split("\n", 1)[0] == "datatools/stats.py"


@pytest.mark.parametrize(
    ("identifier", "words"),
    [
        ("mean_of_column", ["mean", "of", "column"]),
        ("parseCSVFile", ["parse", "csv", "file"]),
        ("(*Stack).Push", ["stack", "push"]),
        ("HTTPServer2.listen", ["http", "server", "2", "listen"]),
        ("impl fmt::Display for Matrix.fmt", ["impl", "fmt", "display", "for", "matrix", "fmt"]),
    ],
)
def test_identifier_words(identifier: str, words: list[str]) -> None:
    assert identifier_words(identifier) == words


def test_token_estimate_is_in_the_range_of_a_code_tokenizer() -> None:
    code = (FIXTURES / "python" / "datatools" / "stats.py").read_text()
    estimate = estimate_tokens(code)
    # BPE code tokenizers average 3-4 characters per token on Python
    assert len(code) / 5 < estimate < len(code) / 2.5
    assert estimate_tokens(code + "\nx = 1") > estimate
    assert estimate_tokens("") == 0


def test_chunker_version_is_recorded_as_a_string() -> None:
    assert isinstance(CHUNKER_VERSION, str) and CHUNKER_VERSION


def test_rust_embedding_text_drops_impl_and_attribute_lines() -> None:
    text = ("impl Arg {\n    #[must_use]\n    #[inline]\n"
            "    pub fn short(mut self, s: char) -> Self {\n        self.short = Some(s);\n"
            "        self\n    }\n}\n")
    method = next(c for c in chunk_source(text, "src/arg.rs", "rust") if c.kind == "method")
    assert method.text.startswith("    #[must_use]")  # the span keeps its attributes
    lines = embedding_text(method).split("\n")
    assert lines[0] == "src/arg.rs | method Arg.short (arg short)"
    assert not any(line.strip().startswith("#[") for line in lines)
    assert lines[1].strip() == "pub fn short(mut self, s: char) -> Self {"


def test_words_style_splits_compound_identifiers_for_text_models() -> None:
    from codesearch.documents import (
        CODE_STYLE,
        WORDS_STYLE,
        document_style,
        in_words,
        recorded_scheme,
        split_compound_identifiers,
        views,
    )

    assert split_compound_identifiers("x = parseCSVFile(read_all, HTTPServer)") == (
        "x = parse csv file(read_all, http server)")
    # abbreviations are written out only as whole words (``_`` separates, letters do not)
    assert in_words("fn arg_len(cfg: Config) -> argv") == (
        "function argument_length(configuration: Config) -> argv")
    chunk = Chunk("lib/opts.js", "javascript", "function", "getArgConflicts", 1, 2,
                  "function getArgConflicts(arg) {\n  return arg.conflictsWith; }")
    assert embedding_text(chunk, WORDS_STYLE) == (
        "library/options.js | function get argument conflicts (get argument conflicts)\n"
        "function get argument conflicts(argument) {\n  return argument.conflicts with; }")
    assert embedding_text(chunk) == embedding_text(chunk, CODE_STYLE)
    # their short views: the name line with the first line of code, and with the last return
    name = "function get argument conflicts (get argument conflicts)"  # the text has the path
    assert views(chunk, WORDS_STYLE) == (f"{name}\nfunction get argument conflicts(argument) {{",
                                         f"{name}\nreturn argument.conflicts with; }}")
    assert views(chunk, CODE_STYLE) == ()  # code models embed the text alone
    # no return statement: the last line of code; a one-line chunk: the name line alone
    rust = Chunk("src/arg.rs", "rust", "method", "impl Arg.short", 1, 4,
                 "pub fn short(mut self, s: char) -> Self {\n    self.short = Some(s);\n"
                 "    self\n}")
    assert [v.split("\n")[1] for v in views(rust, WORDS_STYLE)] == [
        "pub function short(mut self, s: character) -> Self {", "self"]
    one = Chunk("a.py", "python", "function", "f", 1, 1, "def f(): pass")
    assert views(one, WORDS_STYLE) == ("function f\ndef f(): pass", "function f")
    # models without task prompts are general text models; the index records the writing
    assert (document_style("none"), document_style("jina-code-v1")) == (WORDS_STYLE, CODE_STYLE)
    assert recorded_scheme("none") == "none+" + WORDS_STYLE
    assert recorded_scheme("jina-code-v1") == "jina-code-v1"
    assert document_style(recorded_scheme("none")) == WORDS_STYLE


def test_a_function_wrapped_in_a_call_is_a_function() -> None:
    text = (
        "import createAssigner from './_createAssigner.js';\n\n"
        "var assign = createAssigner(function(object, source) {\n"
        "  copyObject(source, keys(source), object);\n"
        "});\n\n"
        "export default assign;\n"
    )
    chunks = chunk_source(text, "assign.js", "javascript")
    assert _outline(chunks) == [
        ("module", "", 1, 1),
        ("function", "assign", 3, 5),
        ("module", "", 7, 7),
    ]
    plain = chunk_source("const n = compute(1, 2);\n", "a.js", "javascript")
    assert [c.kind for c in plain] == ["module"]  # a call without a function literal is not


def test_a_function_wrapped_in_nested_calls_is_a_function() -> None:
    # ramda's `curry(dispatch('x', function x() {...}))`, React's `memo(forwardRef(...))`
    text = (
        "var _curry2 = require('./internal/_curry2.js');\n"
        "var forEach = /*#__PURE__*/_curry2( /*#__PURE__*/_checkForMethod('forEach', "
        "function forEach(fn, list) {\n"
        "  list.map(fn);\n"
        "  return list;\n"
        "}));\n"
        "const Button = memo(forwardRef((props, ref) => {\n"
        "  return props;\n"
        "}));\n"
        "module.exports = forEach;\n"
    )
    chunks = chunk_source(text, "forEach.js", "javascript")
    assert _outline(chunks) == [
        ("module", "", 1, 1),
        ("function", "forEach", 2, 5),
        ("function", "Button", 6, 8),
        ("module", "", 9, 9),
    ]


def test_functions_assigned_to_members_are_definitions() -> None:
    # the CommonJS and prototype ways to define functions
    text = (
        "function Parser(opts) {\n"
        "  this.opts = opts;\n"
        "}\n"
        "Parser.prototype.parse = function (text) {\n"
        "  return text.split(this.opts.sep);\n"
        "};\n"
        "exports.load = function load(path) {\n"
        "  return read(path);\n"
        "};\n"
        "module.exports.save = wrap(function (path, data) {\n"
        "  return write(path, data);\n"
        "});\n"
        "module.exports.VERSION = '1.0';\n"
    )
    chunks = chunk_source(text, "parser.js", "javascript")
    assert _outline(chunks) == [
        ("function", "Parser", 1, 3),
        ("method", "Parser.parse", 4, 6),
        ("function", "load", 7, 9),
        ("function", "save", 10, 12),
        ("module", "", 13, 13),
    ]


def test_an_object_literal_of_functions_is_chunked_by_member() -> None:
    text = (
        "const api = {\n"
        "  parse(text) {\n"
        "    return text.trim();\n"
        "  },\n"
        "  render: function (node) {\n"
        "    return String(node);\n"
        "  },\n"
        "};\n"
        "module.exports = {\n"
        "  load: (path) => {\n"
        "    return read(path);\n"
        "  },\n"
        "};\n"
        "export default {\n"
        "  methods: {\n"
        "    save(item) {\n"
        "      return store(item);\n"
        "    },\n"
        "  },\n"
        "};\n"
        "const limits = { low: 1, high: 2 };\n"
    )
    chunks = chunk_source(text, "api.js", "javascript")
    got = _outline(chunks)
    assert ("method", "api.parse", 2, 4) in got
    assert ("method", "api.render", 5, 7) in got
    assert ("function", "load", 10, 12) in got  # module.exports' functions are the module's
    assert ("method", "methods.save", 16, 18) in got  # Vue-style nested options
    assert ("module", "", 21, 21) in got  # an object without functions stays plain code
    assert next(c for c in chunks if c.symbol == "api").header == "members: parse, render"


def test_a_typescript_cast_of_a_wrapped_function_is_a_function() -> None:
    text = (
        "export const createEntry: Typed<unknown> =\n"
        "  /* @__PURE__ */ assign(\n"
        "    (options: Options) => {\n"
        "      return { options }\n"
        "    },\n"
        "    { withTypes: () => createEntry },\n"
        "  ) as unknown as Typed<unknown>\n"
    )
    chunks = chunk_source(text, "entry.ts", "typescript")
    assert _outline(chunks) == [
        ("function", "createEntry", 1, 7)]


def test_python_definitions_under_a_condition_are_definitions() -> None:
    text = (
        "import sys\n"
        "try:\n"
        "    from _speedups import parse\n"
        "except ImportError:\n"
        "    def parse(text):\n"
        "        return text.split()\n"
        "if sys.platform == 'win32':\n"
        "    def home():\n"
        "        return 'C:/'\n"
        "else:\n"
        "    def home():\n"
        "        return '/home'\n"
        "if __name__ == '__main__':\n"
        "    print(parse('a b'))\n"
    )
    chunks = chunk_source(text, "compat.py", "python")
    got = _outline(chunks)
    assert ("function", "parse", 5, 6) in got
    assert ("function", "home", 8, 9) in got
    assert ("function", "home", 11, 12) in got
    assert ("module", "", 13, 14) in got  # a block without definitions stays plain code
    in_class = chunk_source(
        "class Path:\n"
        "    sep = '/'\n"
        "    if sys.platform == 'win32':\n"
        "        def join(self, other):\n"
        "            return self + '\\\\' + other\n",
        "paths.py", "python")
    assert ("method", "Path.join", 4, 5) in _outline(in_class)


def test_definitions_inside_a_module_wrapper_are_chunked() -> None:
    # UMD / IIFE / AMD wrappers hold a whole library in one function literal
    text = (
        "(function (root, factory) {\n"
        "  module.exports = factory();\n"
        "})(this, function () {\n"
        "  function parse(text) {\n"
        "    return text.split(',');\n"
        "  }\n"
        "  return { parse: parse };\n"
        "});\n"
        "describe('parse', function () {\n"
        "  function sample() { return 'a,b'; }\n"
        "  it('splits', function () {\n"
        "    expect(parse('a,b')).toEqual(['a', 'b']);\n"
        "  });\n"
        "});\n"
        "define(['dep'], function (dep) {\n"
        "  function render(x) {\n"
        "    return dep(x);\n"
        "  }\n"
        "});\n"
    )
    chunks = chunk_source(text, "umd.js", "javascript")
    got = _outline(chunks)
    assert ("function", "parse", 4, 6) in got
    assert ("function", "render", 16, 18) in got  # AMD
    # other calls with callbacks stay whole, helpers and all: `describe(...)` names its subject
    assert ("module", "", 9, 14) in got


def test_go_variables_holding_functions_are_definitions() -> None:
    text = (
        "package cmd\n"
        "\n"
        "var serveCmd = &cobra.Command{\n"
        "\tUse: \"serve\",\n"
        "\tRunE: func(cmd *cobra.Command, args []string) error {\n"
        "\t\treturn serve(cmd)\n"
        "\t},\n"
        "}\n"
        "\n"
        "var handler = func(w http.ResponseWriter, r *http.Request) {\n"
        "\tw.WriteHeader(200)\n"
        "}\n"
        "\n"
        "var limit = 3\n"
    )
    chunks = chunk_source(text, "serve.go", "go")
    assert _outline(chunks) == [
        ("module", "", 1, 1),
        ("variable", "serveCmd", 3, 8),
        ("function", "handler", 10, 12),
        ("module", "", 14, 14),
    ]

"""Split source text into chunks: functions, methods, classes, and the rest. Pure: no IO.

CONTRACT (owned by the foundation work, issue 2; other modules rely on these names):

    CHUNKER_VERSION: str     # bump when chunk boundaries or texts change; in index manifests

    @dataclass(frozen=True)
    class Chunk:
        path: str            # POSIX path relative to the root
        language: str        # e.g. "python", or "text"/"markdown" for fallbacks
        kind: str            # "function" | "method" | "trait_impl" | "class" | "module" | ...
        symbol: str          # "Class.method", "impl Type.fn", "(*Recv).Method"; "" if none
        start_line: int      # 1-based, inclusive
        end_line: int        # 1-based, inclusive
        text: str            # exactly the source lines start_line..end_line
        header: str = ""     # context for the embedder (enclosing definition of split pieces)
        definition_line: int = 0  # first line of the whole definition when this chunk is one
                                  # piece of a split definition (all its pieces share it), else 0

    def chunk_source(text: str, rel_path: str, language: str | None, *,
                     max_tokens: int = 512) -> list[Chunk]
    def estimate_tokens(text: str) -> int       # what the budget counts, without a tokenizer

What the model and the full-text index read of a chunk (its embedding text and views, its content
hash, its lexical text) is codesearch.documents: this module only decides where chunks begin and
end.

How a file is cut (grammar languages):
- each function is a chunk; a function inside a class-like type is a method named ``Type.method``
  (kind ``trait_impl`` when it implements a Rust trait: ``impl Display for Error.fmt``);
- a class-like type is chunked as its header plus fields (the lines between its methods), and each
  method is its own chunk;
- doc comments, decorators and attributes directly above a definition belong to it;
- the remaining top-level code is grouped into ``module`` chunks;
- anything longer than the token budget is split at statement boundaries; every piece after the
  first gets a ``header`` naming the definition it continues.
Documentation is kind ``doc``, one chunk per section (symbol: its heading path, ``Guide >
Install``; a section over the budget becomes several windows of that section): Markdown by ``#``
heading, reStructuredText by underlined (and overlined) titles, AsciiDoc by ``=`` titles, and
plain-text docs (README, CHANGELOG, ... and ``.txt`` files under ``doc/`` or ``docs/``) by
underlined titles where they have them. Docstrings stay with their code. Other text without a
grammar is cut into overlapping line windows (``window``). Line endings are normalised
(``\\r\\n`` -> ``\\n``) in chunk texts so a checkout's line-ending setting does not change hashes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codesearch.source.languages import Definition, Language, get_language, get_parser
from codesearch.vocabulary import identifier_words

if TYPE_CHECKING:
    from tree_sitter import Node

# Bump whenever chunk boundaries, texts or headers change, or what codesearch.documents writes
# (embedding_text, views, lexical_text).
CHUNKER_VERSION = "13"

DEFAULT_MAX_TOKENS = 512
# Room left in the budget for the embedding header line and the model's document prefix.
_PREFIX_TOKENS = 8
_WINDOW_MAX_LINES = 60
_WINDOW_OVERLAP_LINES = 5


@dataclass(frozen=True)
class Chunk:
    """One piece of a file that gets its own embedding."""

    path: str
    language: str
    kind: str
    symbol: str
    start_line: int
    end_line: int
    text: str
    header: str = ""
    # Pieces of one split definition share its first line (search shows one piece per
    # definition); 0 for a chunk that is not a piece.
    definition_line: int = 0


# --- token estimate ------------------------------------------------------------------------------

_TOKEN_PIECE_RE = re.compile(r"[A-Za-z]+|\d+|\n[ \t]*|[^\sA-Za-z\d]")


def estimate_tokens(text: str) -> int:
    """A fast estimate of BPE tokens for code, without loading a tokenizer.

    Words cost one token per ~8 letters, digits one per 3, each punctuation character one, and a
    newline with its indentation one; spaces between words are free (BPE merges them into the
    next word). Counting every punctuation character alone is meant to err high, so chunks fit
    the model's window. Not calibrated against Qwen2's tokenizer (unavailable offline); the
    budget parameter is what to tune if real counts differ.
    """
    total = 0
    for piece in _TOKEN_PIECE_RE.findall(text):
        first = piece[0]
        if first.isalpha():
            total += 1 + len(piece) // 8
        elif first.isdigit():
            total += 1 + len(piece) // 3
        else:
            total += 1
    return total


# --- entry point ---------------------------------------------------------------------------------


def chunk_source(
    text: str, rel_path: str, language: str | None, *, max_tokens: int = DEFAULT_MAX_TOKENS
) -> list[Chunk]:
    """Cut one file's text into chunks ordered by start line.

    ``language`` is a languages.py name (None or unknown: plain text). Every chunk's text is exactly
    its lines; spans never overlap except for the overlap of fallback line windows, and a chunk is
    never empty. ``max_tokens`` is the budget per chunk including the embedding header (estimated).
    """
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    lang = get_language(language)
    label = language or "text"
    if lang is not None and lang.grammar is not None:
        try:
            tree = get_parser(lang.name).parse(text.encode("utf-8", errors="replace"))
        except Exception:  # a grammar crash must not lose the file: fall back to windows
            tree = None
        if tree is not None:
            return _TreeChunker(lines, rel_path, lang, max_tokens).run(tree.root_node)
    cutter = _LineChunker(lines, rel_path, label, max_tokens)
    if label == "markdown":
        return cutter.sections(markdown_headings(lines))
    if label == "asciidoc":
        return cutter.sections(asciidoc_headings(lines))
    if label == "restructuredtext" or (label == "text" and is_text_doc(rel_path)):
        return cutter.sections(underlined_headings(lines))
    return cutter.windows(0, len(lines) - 1, kind="window", symbol="")


# --- documentation -------------------------------------------------------------------------------

DOC_KIND = "doc"  # the kind of every documentation chunk (codesearch.documents.DOC_KIND)
# Plain-text files that are documentation by name (any extension or none).
_DOC_NAMES = frozenset({"readme", "changelog", "changes", "history", "news", "contributing",
                        "faq", "install", "usage", "authors", "hacking", "todo"})
_DOC_DIRS = frozenset({"doc", "docs", "documentation"})


def is_text_doc(rel_path: str) -> bool:
    """Whether a file without a grammar or markup language is documentation: a README,
    CHANGELOG, ... by name, or a ``.txt`` file under a ``doc``/``docs`` folder."""
    parts = rel_path.lower().split("/")
    name = parts[-1]
    stem, dot, ext = name.partition(".")
    if stem in _DOC_NAMES and ext in ("", "txt", "text"):
        return True
    return name.endswith(".txt") and any(p in _DOC_DIRS for p in parts[:-1])


Heading = tuple[int, int, str]  # row of the title line (0-based), level, title


def markdown_headings(lines: list[str]) -> list[Heading]:
    """``#`` headings outside fenced code blocks."""
    headings: list[Heading] = []
    fence: str | None = None
    for row, line in enumerate(lines):
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)[0] * 3
            elif stripped.startswith(fence):
                fence = None
            continue
        if fence is None:
            match = re.match(r" {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
            if match:
                headings.append((row, len(match.group(1)), match.group(2)))
    return headings


def asciidoc_headings(lines: list[str]) -> list[Heading]:
    """``= Title`` / ``== Section`` headings (or Markdown-style ``#``) outside ``----`` and
    ``....`` delimited blocks."""
    headings: list[Heading] = []
    block: str | None = None
    for row, line in enumerate(lines):
        stripped = line.rstrip()
        if re.fullmatch(r"(-{4,}|\.{4,}|={4,}|\+{4,}|_{4,}|\*{4,}|`{3,})", stripped):
            block = None if block == stripped else (block or stripped)
            continue
        if block is None:
            match = re.match(r"(={1,6}|#{1,6})\s+(\S.*?)\s*$", line)
            if match:
                headings.append((row, len(match.group(1)), match.group(2)))
    return headings


_ADORNMENT_RE = re.compile(r"""([=\-~^"'`#*+:.<>_!$%&,/;?@\\|])\1{2,}\s*$""")


def underlined_headings(lines: list[str]) -> list[Heading]:
    """reStructuredText section titles: a title line underlined (optionally also overlined) by a
    run of one punctuation character at least as long as the title; levels in the order the
    styles first appear, as docutils assigns them. Plain-text docs (CHANGELOG) use the same."""
    styles: list[tuple[str, bool]] = []
    headings: list[Heading] = []
    row = 0
    while row + 1 < len(lines):
        title = lines[row].strip()
        under = lines[row + 1].rstrip()
        over = row > 0 and bool(_ADORNMENT_RE.fullmatch(lines[row - 1].rstrip()))
        if (title and not _ADORNMENT_RE.fullmatch(title) and not lines[row].startswith(" ")
                and _ADORNMENT_RE.fullmatch(under) and len(under) >= len(title)):
            style = (under[0], over and lines[row - 1].rstrip()[0] == under[0])
            if style not in styles:
                styles.append(style)
            start = row - 1 if style[1] else row
            headings.append((start, styles.index(style) + 1, title))
            row += 2
            continue
        row += 1
    return headings


# --- shared line machinery -----------------------------------------------------------------------

_NOT_SIGNATURE = ("@", "#[", "#!", "//", "/*", "*", "#", "--", "<?php", "[")
_TRIVIAL_RE = re.compile(r"[\s{}()\[\];,]*(?:end|fi|done|esac)?[\s{}()\[\];,]*")


class _Lines:
    """The file's lines with prefix sums of estimated tokens, and chunk construction."""

    def __init__(self, lines: list[str], rel_path: str, language: str, max_tokens: int):
        self.lines = lines
        self.rel_path = rel_path
        self.language = language
        self.max_tokens = max_tokens
        self.prefix = [0]
        for line in lines:
            self.prefix.append(self.prefix[-1] + estimate_tokens(line) + 1)
        self.chunks: list[Chunk] = []

    def cost(self, start: int, end: int) -> int:
        """Estimated tokens of rows start..end (0-based, inclusive)."""
        return self.prefix[end + 1] - self.prefix[start]

    def budget(self, kind: str, symbol: str) -> int:
        """Tokens left for the text once the embedding header line is accounted for."""
        head = f"{self.rel_path} | {kind} {symbol} ({' '.join(identifier_words(symbol))})"
        return max(32, self.max_tokens - estimate_tokens(head) - _PREFIX_TOKENS)

    def trim(self, start: int, end: int) -> tuple[int, int]:
        """Drop blank lines at both ends of a span (end < start when nothing is left)."""
        while start <= end and not self.lines[start].strip():
            start += 1
        while end >= start and not self.lines[end].strip():
            end -= 1
        return start, end

    def line_units(self, start: int, end: int, budget: int) -> list[tuple[int, int]]:
        """Rows start..end cut into runs of whole lines that fit the budget (a single longer
        line stays whole: cutting inside a line would break the line-number contract)."""
        units: list[tuple[int, int]] = []
        cur = start
        for row in range(start, end + 1):
            if row > cur and self.cost(cur, row) > budget:
                units.append((cur, row - 1))
                cur = row
        if cur <= end:
            units.append((cur, end))
        return units

    def pack(self, units: list[tuple[int, int]], budget: int) -> list[tuple[int, int]]:
        """Merge consecutive row ranges greedily while they fit the budget."""
        pieces: list[tuple[int, int]] = []
        for start, end in units:
            if pieces and self.cost(pieces[-1][0], end) <= budget:
                pieces[-1] = (pieces[-1][0], end)
            else:
                pieces.append((start, end))
        return pieces

    def emit(self, start: int, end: int, kind: str, symbol: str, header: str = "",
             definition_line: int = 0) -> Chunk | None:
        """Add the chunk for rows start..end after trimming blank edges; None if nothing is left."""
        start, end = self.trim(start, end)
        if start > end:
            return None
        text = "\n".join(self.lines[start : end + 1])
        chunk = Chunk(self.rel_path, self.language, kind, symbol, start + 1, end + 1, text, header,
                      definition_line)
        self.chunks.append(chunk)
        return chunk

    def signature(self, start: int, end: int) -> str:
        """The line that names a definition: its first line that is not a comment, decorator or
        attribute (those come first when they belong to it)."""
        for row in range(start, min(end, len(self.lines) - 1) + 1):
            line = self.lines[row].strip()
            if line and not line.startswith(_NOT_SIGNATURE):
                return line[:160]
        return self.lines[start].strip()[:160] if start < len(self.lines) else ""

    @staticmethod
    def header_cost(kind: str, symbol: str, signature: str) -> int:
        """Tokens a piece header takes (see emit_pieces), reserved when a definition is split."""
        return estimate_tokens(f"(part 10/10 of {kind} {symbol}) {signature}") + 1

    def emit_pieces(
        self,
        pieces: list[tuple[int, int]],
        kind: str,
        symbol: str,
        signature: str,
        first_header: str = "",
    ) -> None:
        """Emit the pieces of one definition; every piece after the first names what it
        continues, so a piece read alone still says where it comes from."""
        pieces = [p for p in (self.trim(s, e) for s, e in pieces) if p[0] <= p[1]]
        definition_line = pieces[0][0] + 1 if len(pieces) > 1 else 0
        for i, (start, end) in enumerate(pieces):
            header = first_header
            if i > 0:
                what = f"{kind} {symbol}".strip()
                header = f"(part {i + 1}/{len(pieces)} of {what}) {signature}".strip()
            self.emit(start, end, kind, symbol, header, definition_line)


class _LineChunker(_Lines):
    """Fallbacks for files without a grammar."""

    def windows(self, start: int, end: int, *, kind: str, symbol: str) -> list[Chunk]:
        """Overlapping windows of whole lines, each within the budget and at most 60 lines."""
        budget = self.budget(kind, symbol)
        start, end = self.trim(start, end)
        cur = start
        while cur <= end:
            stop = cur
            while (
                stop < end
                and stop - cur + 1 < _WINDOW_MAX_LINES
                and self.cost(cur, stop + 1) <= budget
            ):
                stop += 1
            self.emit(cur, stop, kind, symbol)
            if stop >= end:
                break
            overlap = min(_WINDOW_OVERLAP_LINES, (stop - cur + 1) // 4)
            cur = stop + 1 - overlap
        return self.chunks

    def sections(self, headings: list[Heading]) -> list[Chunk]:
        """One ``doc`` chunk per heading section (symbol: the heading path, ``Guide >
        Install``; the text before the first heading has none); sections over the budget become
        windows within the section."""
        bounds: list[Heading] = [(0, 0, "")] if not headings or headings[0][0] > 0 else []
        bounds += headings
        path: list[tuple[int, str]] = []
        for i, (row, level, title) in enumerate(bounds):
            end = bounds[i + 1][0] - 1 if i + 1 < len(bounds) else len(self.lines) - 1
            if title:
                path = [p for p in path if p[0] < level] + [(level, title)]
            symbol = " > ".join(t for _, t in path)
            start, end = self.trim(row, end)
            if start > end:
                continue
            if self.cost(start, end) <= self.budget(DOC_KIND, symbol):
                self.emit(start, end, DOC_KIND, symbol)
            else:
                self.windows(start, end, kind=DOC_KIND, symbol=symbol)
        return self.chunks


# --- grammar-driven chunking ---------------------------------------------------------------------


def _end_row(node: Node) -> int:
    """Last row a node really occupies (a node ending at column 0 ends on the row before)."""
    row = node.end_point.row
    if node.end_point.column == 0 and row > node.start_point.row:
        return row - 1
    return row


@dataclass
class _Item:
    """A definition or a run of other code among a list of sibling nodes."""

    start: int
    end: int
    definition: Definition | None = None
    nodes: list[Node] | None = None


class _TreeChunker(_Lines):
    def __init__(self, lines: list[str], rel_path: str, lang: Language, max_tokens: int):
        super().__init__(lines, rel_path, lang.name, max_tokens)
        self.lang = lang
        assert lang.classify is not None
        self.classify = lang.classify

    def run(self, root: Node) -> list[Chunk]:
        self.level(list(root.named_children), [])
        self.chunks.sort(key=lambda c: (c.start_line, c.end_line))
        return self.chunks

    # -- finding definitions among siblings

    def items(self, members: list[Node]) -> list[_Item]:
        """Group siblings into definitions (with the comments/decorators right above them) and
        runs of other code."""
        items: list[_Item] = []
        pending: list[Node] = []
        prev_end = -1

        def add_other(node: Node) -> None:
            start, end = node.start_point.row, _end_row(node)
            last = items[-1] if items else None
            if last is not None and last.definition is None and last.nodes is not None:
                last.end = max(last.end, end)
                last.nodes.append(node)
            else:
                items.append(_Item(start, end, nodes=[node]))

        def flush() -> None:
            for node in pending:
                add_other(node)
            pending.clear()

        for node in members:
            if not node.is_named:
                continue
            row = node.start_point.row
            if node.type in self.lang.attach and row > prev_end:
                if pending and row > _end_row(pending[-1]) + 1:
                    flush()
                pending.append(node)
            else:
                definition = self.classify(node)
                if definition is None:
                    flush()
                    add_other(node)
                else:
                    start = row
                    if pending and row <= _end_row(pending[-1]) + 1:
                        start = pending[0].start_point.row
                        pending.clear()
                    else:
                        flush()
                        start = self.steal_trailing_comments(items, row)
                    items.append(_Item(start, _end_row(node), definition=definition))
            prev_end = max(prev_end, _end_row(node))
        flush()
        return items

    def steal_trailing_comments(self, items: list[_Item], row: int) -> int:
        """Some grammars park a doc comment inside the node before a definition (Kotlin puts it in
        the import list); give it back to the definition. Returns the definition's start row."""
        last = items[-1] if items else None
        if last is None or last.definition is not None or not last.nodes:
            return row
        cur = last.nodes[-1]
        while cur.named_child_count:
            kids = cur.named_children
            if kids[-1].type in self.lang.attach:
                i = len(kids) - 1
                while (
                    i > 0
                    and kids[i - 1].type in self.lang.attach
                    and (_end_row(kids[i - 1]) + 1 >= kids[i].start_point.row)
                ):
                    i -= 1
                start = kids[i].start_point.row
                if last.start < start and _end_row(kids[-1]) + 1 >= row:
                    last.end = start - 1
                    return start
                return row
            cur = kids[-1]
        return row

    # -- emitting

    def level(self, members: list[Node], scope: list[str], *, method_kind: str = "") -> None:
        """Chunk siblings at file level (or inside a transparent container, which keeps whether
        its definitions are methods: ``if PY2: def method(self)`` in a class body).
        ``method_kind``: what a function is called here ("" outside types; see
        Definition.method_kind)."""
        for item in self.items(members):
            if item.definition is None:
                assert item.nodes is not None
                self.other_code(item.nodes, item.start, item.end, "module", "")
            else:
                self.definition(item.definition, item.start, item.end, scope,
                                method_kind=method_kind)

    def definition(
        self, d: Definition, start: int, end: int, scope: list[str], *, method_kind: str
    ) -> None:
        if d.container:
            self.level(d.members, scope, method_kind=method_kind)
        elif d.classlike:
            self.type_definition(d, start, end, scope)
        else:
            kind = method_kind if method_kind and d.kind == "function" else d.kind
            symbol = ".".join([*scope, d.name])
            self.span(start, end, kind, symbol, d.node)

    def type_definition(self, d: Definition, start: int, end: int, scope: list[str]) -> None:
        """A class-like type: its header and fields (the lines not inside methods) become chunks of
        the type's kind; its methods and nested types are chunked on their own."""
        symbol = ".".join([*scope, d.name])
        items = self.items(d.members)
        runs: list[tuple[int, int]] = []
        cur = start
        for item in items:
            if item.definition is not None:
                runs.append((cur, item.start - 1))
                cur = max(cur, item.end + 1)
        runs.append((cur, end))
        has_fields = any(item.definition is None for item in items)
        if d.emit_header or has_fields:
            # the type's chunk lists its members, so "a class that does X" can match the type
            names = [item.definition.name for item in items if item.definition is not None]
            members = f"members: {', '.join(names)}"[:300] if names else ""
            signature = self.signature(start, end)
            budget = self.budget(d.kind, symbol) - max(
                self.header_cost(d.kind, symbol, signature), estimate_tokens(members) + 1
            )
            pieces: list[tuple[int, int]] = []
            for run_start, run_end in runs:
                run_start, run_end = self.trim(run_start, run_end)
                if run_start > run_end:
                    continue
                text = "\n".join(self.lines[run_start : run_end + 1])
                if _TRIVIAL_RE.fullmatch(text):
                    continue
                nodes = [
                    n
                    for item in items
                    if item.nodes and run_start <= item.start <= run_end
                    for n in item.nodes
                ]
                pieces += self.pack(self.node_units(nodes, run_start, run_end, budget), budget)
            self.emit_pieces(pieces, d.kind, symbol, signature, members)
        for item in items:
            if item.definition is not None:
                self.definition(
                    item.definition, item.start, item.end, [*scope, d.name],
                    method_kind=d.method_kind
                )

    def other_code(self, nodes: list[Node], start: int, end: int, kind: str, symbol: str) -> None:
        """Top-level statements between definitions, grouped into chunks within the budget."""
        start, end = self.trim(start, end)
        if start > end:
            return
        text = "\n".join(self.lines[start : end + 1])
        if _TRIVIAL_RE.fullmatch(text):
            return
        if start == end and all(n.type in self.lang.attach for n in nodes):
            return  # a lone comment line such as `}  // namespace geo` says nothing alone
        budget = self.budget(kind, symbol)
        for piece_start, piece_end in self.pack(self.node_units(nodes, start, end, budget), budget):
            self.emit(piece_start, piece_end, kind, symbol)

    def span(self, start: int, end: int, kind: str, symbol: str, node: Node) -> None:
        """One definition: a single chunk, or pieces cut at statement boundaries."""
        budget = self.budget(kind, symbol)
        if self.cost(start, end) <= budget:
            self.emit(start, end, kind, symbol)
            return
        signature = self.signature(start, end)
        budget -= self.header_cost(kind, symbol, signature)
        units = self.units(node, start, end, budget)
        self.emit_pieces(self.pack(units, budget), kind, symbol, signature)

    # -- cutting at statement boundaries

    def node_units(
        self, nodes: list[Node], start: int, end: int, budget: int
    ) -> list[tuple[int, int]]:
        """Rows start..end cut where each of ``nodes`` begins; oversized parts are cut further."""
        starts = sorted(
            {start} | {n.start_point.row for n in nodes if start < n.start_point.row <= end}
        )
        units: list[tuple[int, int]] = []
        for i, a in enumerate(starts):
            b = starts[i + 1] - 1 if i + 1 < len(starts) else end
            if self.cost(a, b) <= budget:
                units.append((a, b))
                continue
            candidates = [n for n in nodes if max(start, n.start_point.row) == a]
            if candidates:
                biggest = max(candidates, key=_end_row)
                units.extend(self.units(biggest, a, b, budget))
            else:
                units.extend(self.line_units(a, b, budget))
        return units

    def units(
        self, node: Node, start: int, end: int, budget: int, depth: int = 0
    ) -> list[tuple[int, int]]:
        """Rows start..end of ``node`` cut at the boundaries of its children, descending into the
        child that is too big (a function's body, an if's block) until every unit fits or only
        whole lines are left."""
        if self.cost(start, end) <= budget:
            return [(start, end)]
        kids = [k for k in node.named_children if _end_row(k) >= start and k.start_point.row <= end]
        if not kids or depth > 40:
            return self.line_units(start, end, budget)
        starts = {max(start, k.start_point.row) for k in kids}
        if starts == {start} and len(kids) >= 1:
            biggest = max(kids, key=lambda k: _end_row(k) - k.start_point.row)
            if _end_row(biggest) > start or biggest.named_child_count:
                return self.units(biggest, start, end, budget, depth + 1)
            return self.line_units(start, end, budget)
        units: list[tuple[int, int]] = []
        ordered = sorted(starts | {start})
        for i, a in enumerate(ordered):
            b = ordered[i + 1] - 1 if i + 1 < len(ordered) else end
            if self.cost(a, b) <= budget:
                units.append((a, b))
                continue
            candidates = [k for k in kids if max(start, k.start_point.row) == a]
            if candidates:
                biggest = max(candidates, key=_end_row)
                units.extend(self.units(biggest, a, b, budget, depth + 1))
            else:
                units.extend(self.line_units(a, b, budget))
        return units

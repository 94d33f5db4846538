"""Split source text into chunks: functions, methods, classes, and the rest. Pure: no IO.

CONTRACT (owned by the foundation work, issue 2; other modules rely on these names):

    CHUNKER_VERSION: str     # bump when chunk boundaries or texts change; recorded in index manifests

    @dataclass(frozen=True)
    class Chunk:
        path: str            # POSIX path relative to the root
        language: str        # e.g. "python", or "text"/"markdown" for fallbacks
        kind: str            # "function" | "method" | "class" | "module" | "section" | "window" ...
        symbol: str          # qualified: "Class.method", "impl Type.fn", "(*Recv).Method"; "" if none
        start_line: int      # 1-based, inclusive
        end_line: int        # 1-based, inclusive
        text: str            # exactly the source lines start_line..end_line
        header: str = ""     # context for the embedder (file, enclosing definition, for split pieces)

        @property
        def content_hash(self) -> str: ...   # sha256 hex of embedding_text(self)

    def embedding_text(chunk: Chunk) -> str   # what the embedder sees for this chunk
    def chunk_source(text: str, rel_path: str, language: str | None, *,
                     max_tokens: int = 512) -> list[Chunk]
"""

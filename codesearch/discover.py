"""Walk a root and yield the source files worth indexing.

CONTRACT (owned by the foundation work, issue 2; other modules rely on these names):

    @dataclass(frozen=True)
    class SourceFile:
        path: Path          # absolute path on disk
        rel: str            # POSIX path relative to the root
        size: int
        mtime_ns: int
        language: str | None  # languages.py name, or None for plain-text fallback

    @dataclass(frozen=True)
    class Skip:
        rel: str
        reason: str          # short fixed reason: "gitignored", "binary", "too large", "minified", ...

    class Discovery:        # iterate it for SourceFiles; .skipped lists Skips (countable, --verbose)
        def __init__(self, root: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                     include_secrets: bool = False, include_vendored: bool = False): ...
        def __iter__(self) -> Iterator[SourceFile]: ...
        skipped: list[Skip]

    def read_source(file: SourceFile) -> str   # decoded with replacement, line numbers preserved
    def is_ignored(root: Path, rel: str) -> bool   # for watch mode: would discovery skip this path?
"""

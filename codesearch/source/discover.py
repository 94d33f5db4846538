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
        reason: str          # fixed reason: "gitignored", "binary", "too large", "minified", ...

    class Discovery:        # iterate it for SourceFiles; .skipped lists Skips (for --verbose)
        def __init__(self, root: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                     include_secrets: bool = False, include_vendored: bool = False): ...
        def __iter__(self) -> Iterator[SourceFile]: ...
        skipped: list[Skip]

    def read_source(file: SourceFile) -> str   # decoded with replacement, line numbers preserved
    def is_ignored(root: Path, rel: str) -> bool   # for watch mode: would discovery skip this path?

Rules, in the order they are checked (the first that applies is the reason recorded):
- ``.git``/``.hg``/``.svn`` directories: "vcs";
- ``.gitignore`` files at every level (and those above the root up to the repository top),
  ``.git/info/exclude``: "gitignored"; ``.csignore`` files (gitignore syntax, any level):
  "csignored";
- node_modules, vendor, .venv (any directory holding a pyvenv.cfg), dist, build, target, caches:
  "vendored" (``include_vendored`` keeps them);
- ``.env*``, ``*.pem``, ``*.key``, ``id_rsa*`` and similar: "secret" (``include_secrets`` keeps
  them);
- lockfiles: "lockfile"; data files (csv, logs, ...): "data file";
- symlinks are never followed: one pointing outside the root is "symlink outside root", a dangling
  one or a loop is "broken symlink", one inside the root is "symlink" (its target is indexed under
  its own path);
- FIFOs, sockets, devices: "not a regular file"; files that cannot be opened: "unreadable";
- over ``max_file_bytes``: "too large"; known binary formats or a NUL byte: "binary";
- ``*.min.js``-style names or very long lines: "minified"; "@generated"/"DO NOT EDIT" markers and
  protobuf outputs: "generated".
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from codesearch.config import DEFAULT_MAX_FILE_BYTES
from codesearch.errors import CodeSearchError, UsageError
from codesearch.source.chunk import DEFAULT_MAX_TOKENS, Chunk, chunk_source
from codesearch.source.languages import language_for_path

VCS = "vcs"
GITIGNORED = "gitignored"
CSIGNORED = "csignored"
VENDORED = "vendored"
SECRET = "secret"
LOCKFILE = "lockfile"
DATA_FILE = "data file"
SYMLINK = "symlink"
SYMLINK_OUTSIDE = "symlink outside root"
BROKEN_SYMLINK = "broken symlink"
OUTSIDE_ROOT = "outside root"
NOT_REGULAR = "not a regular file"
UNREADABLE = "unreadable"
TOO_LARGE = "too large"
BINARY = "binary"
MINIFIED = "minified"
GENERATED = "generated"

REASONS = (
    VCS,
    GITIGNORED,
    CSIGNORED,
    VENDORED,
    SECRET,
    LOCKFILE,
    DATA_FILE,
    SYMLINK,
    SYMLINK_OUTSIDE,
    BROKEN_SYMLINK,
    OUTSIDE_ROOT,
    NOT_REGULAR,
    UNREADABLE,
    TOO_LARGE,
    BINARY,
    MINIFIED,
    GENERATED,
)

VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs", ".jj"})
VENDORED_DIRS = frozenset(
    {
        "node_modules",
        "bower_components",
        "jspm_packages",
        "vendor",
        ".venv",
        "venv",
        "site-packages",
        "dist",
        "build",
        "target",
        "__pycache__",
        ".tox",
        ".nox",
        ".eggs",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".gradle",
        ".next",
        ".nuxt",
        ".svelte-kit",
        ".terraform",
        ".cache",
        "Pods",
        "Carthage",
    }
)
SECRET_PATTERNS = (
    ".env",
    ".env.*",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    "*.secret",
    "secrets.y*ml",
)
LOCKFILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "bun.lock",
        "Cargo.lock",
        "poetry.lock",
        "Pipfile.lock",
        "pdm.lock",
        "uv.lock",
        "composer.lock",
        "Gemfile.lock",
        "go.sum",
        "flake.lock",
        "Podfile.lock",
        "packages.lock.json",
        "mix.lock",
        "pubspec.lock",
        "gradle.lockfile",
    }
)
DATA_SUFFIXES = frozenset(
    {".csv", ".tsv", ".log", ".jsonl", ".ndjson", ".svg", ".map", ".snap", ".dat", ".lock"}
)
BINARY_SUFFIXES = frozenset(
    """
    .png .jpg .jpeg .gif .bmp .ico .icns .webp .tif .tiff .psd .heic .avif
    .zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .jar .war .ear .whl .egg .deb .rpm .dmg .iso .apk
    .so .dylib .dll .exe .o .a .lib .obj .bin .elf .class .pyc .pyo .pyd .wasm .dex
    .ttf .otf .woff .woff2 .eot
    .mp3 .wav .ogg .flac .m4a .mp4 .mov .avi .mkv .webm
    .pdf .doc .docx .xls .xlsx .ppt .pptx .odt .ods
    .db .sqlite .sqlite3 .npy .npz .pkl .pickle .pt .pth .onnx .safetensors .h5 .parquet .arrow
    .lance .idx .pack
    """.split()
)
MINIFIED_PATTERNS = ("*.min.js", "*.min.mjs", "*.min.css", "*-min.js", "*.bundle.js", "*.chunk.js")
GENERATED_PATTERNS = ("*_pb2.py", "*_pb2_grpc.py", "*.pb.go", "*.pb.cc", "*.pb.h", "*.g.dart")

# How much of a file discovery reads to judge it (binary, minified, generated, shebang).
_SAMPLE_BYTES = 64 * 1024
_MINIFIED_LONGEST = 1000
_MINIFIED_MEAN = 200
_MINIFIED_ANY_LINE = 20000


@dataclass(frozen=True)
class SourceFile:
    """A file discovery decided to index."""

    path: Path
    rel: str
    size: int
    mtime_ns: int
    language: str | None


@dataclass(frozen=True)
class Skip:
    """A file or directory (rel ends with "/") discovery left out, and why (one of REASONS)."""

    rel: str
    reason: str


class UnreadableFileError(CodeSearchError, OSError):
    """A file that was discovered cannot be read any more (deleted, permissions changed)."""


def read_source(file: SourceFile) -> str:
    """The file's text: UTF-8 (BOM dropped) with undecodable bytes replaced by U+FFFD, so line
    numbers match the file on disk. Raises UnreadableFileError (an OSError) if it cannot be read."""
    try:
        data = file.path.read_bytes()
    except OSError as err:
        error = UnreadableFileError(
            f"cannot read {file.rel}: {err.strerror or err}",
            hint="check that the file exists and is readable",
        )
        error.errno, error.strerror, error.filename = err.errno, err.strerror, err.filename
        raise error from err
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="replace")


# --- ignore files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """The patterns of one ignore file, matched against paths relative to ``base``."""

    base: str  # absolute POSIX path of the directory the file applies to
    spec: pathspec.PathSpec
    reason: str


def _load_spec(path: Path, base: Path, reason: str) -> _Spec | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    spec = pathspec.GitIgnoreSpec.from_lines(text.splitlines())
    if not spec.patterns:
        return None
    return _Spec(base.as_posix(), spec, reason)


def _match(specs: list[_Spec], abs_posix: str, is_dir: bool) -> str | None:
    """Gitignore precedence: the last matching pattern over all files (outer to inner) decides;
    a negated pattern (`!keep.py`) re-includes."""
    verdict: str | None = None
    for s in specs:
        if not abs_posix.startswith(s.base + "/"):
            continue
        rel = abs_posix[len(s.base) + 1 :] + ("/" if is_dir else "")
        result = s.spec.check_file(rel)
        if result.include is not None:
            verdict = s.reason if result.include else None
    return verdict


def _git_toplevel(root: Path) -> Path | None:
    for candidate in (root, *root.parents):
        if os.path.exists(candidate / ".git"):
            return candidate
    return None


# --- discovery -----------------------------------------------------------------------------------


class Discovery:
    """The files under ``root`` worth indexing, in a stable (sorted) order.

    Iterating walks the tree afresh; ``skipped`` then lists every file or directory left out (a
    skipped directory counts once, as ``dir/``), and ``counts()`` tallies them by reason.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        include_secrets: bool = False,
        include_vendored: bool = False,
    ) -> None:
        root = Path(root).expanduser()
        if not os.path.exists(root):
            raise UsageError(f"no such directory: {root}", hint="give the root of a source tree")
        if not os.path.isdir(root):
            raise UsageError(f"not a directory: {root}", hint="give the root of a source tree")
        self.root = root.resolve()
        self.max_file_bytes = max_file_bytes
        self.include_secrets = include_secrets
        self.include_vendored = include_vendored
        self.skipped: list[Skip] = []
        self._root_posix = self.root.as_posix()
        self._base_specs = self._outer_specs()

    def counts(self) -> Counter[str]:
        """How many paths were skipped for each reason (after iterating)."""
        return Counter(s.reason for s in self.skipped)

    # -- walking

    def __iter__(self) -> Iterator[SourceFile]:
        self.skipped = []
        yield from self._walk(self.root, "", self._base_specs)

    def _walk(self, directory: Path, dir_rel: str, specs: list[_Spec]) -> Iterator[SourceFile]:
        specs = specs + self._dir_specs(directory)
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            self.skipped.append(Skip(f"{dir_rel}/" if dir_rel else "./", UNREADABLE))
            return
        for entry in entries:
            rel = f"{dir_rel}/{entry.name}" if dir_rel else entry.name
            try:
                is_link = entry.is_symlink()
                is_dir = not is_link and entry.is_dir(follow_symlinks=False)
            except OSError:
                self.skipped.append(Skip(rel, UNREADABLE))
                continue
            if is_dir:
                reason = self._dir_reason(Path(entry.path), rel, specs)
                if reason is not None:
                    self.skipped.append(Skip(f"{rel}/", reason))
                else:
                    yield from self._walk(Path(entry.path), rel, specs)
                continue
            result = self._file(Path(entry.path), rel, specs, is_link)
            if isinstance(result, Skip):
                self.skipped.append(result)
            else:
                yield result

    # -- the rules

    def _outer_specs(self) -> list[_Spec]:
        """.git/info/exclude and the .gitignore files above the root, up to the repository top."""
        specs: list[_Spec] = []
        top = _git_toplevel(self.root)
        if top is None:
            return specs
        exclude = top / ".git" / "info" / "exclude"
        if os.path.isfile(exclude) and (s := _load_spec(exclude, top, GITIGNORED)):
            specs.append(s)
        for directory in reversed(self.root.parents):
            if directory == top or top in directory.parents:
                if s := _load_spec(directory / ".gitignore", directory, GITIGNORED):
                    specs.append(s)
        return specs

    def _dir_specs(self, directory: Path) -> list[_Spec]:
        specs = []
        for name, reason in ((".gitignore", GITIGNORED), (".csignore", CSIGNORED)):
            if s := _load_spec(directory / name, directory, reason):
                specs.append(s)
        return specs

    def _abs(self, rel: str) -> str:
        return f"{self._root_posix}/{rel}"

    def _dir_reason(self, path: Path, rel: str, specs: list[_Spec]) -> str | None:
        name = path.name
        if name in VCS_DIRS:
            return VCS
        if reason := _match(specs, self._abs(rel), is_dir=True):
            return reason
        if not self.include_vendored and (
            name in VENDORED_DIRS
            or name.endswith(".egg-info")
            or os.path.exists(path / "pyvenv.cfg")
        ):
            return VENDORED
        return None

    def _name_reason(self, rel: str, specs: list[_Spec]) -> str | None:
        name = rel.rsplit("/", 1)[-1]
        if reason := _match(specs, self._abs(rel), is_dir=False):
            return reason
        if not self.include_secrets and any(fnmatch.fnmatch(name, p) for p in SECRET_PATTERNS):
            return SECRET
        if name in LOCKFILES:
            return LOCKFILE
        suffix = os.path.splitext(name)[1].lower()
        if suffix in BINARY_SUFFIXES:
            return BINARY
        if suffix in DATA_SUFFIXES:
            return DATA_FILE
        if any(fnmatch.fnmatch(name, p) for p in MINIFIED_PATTERNS):
            return MINIFIED
        if any(fnmatch.fnmatch(name, p) for p in GENERATED_PATTERNS):
            return GENERATED
        return None

    def _link_reason(self, path: Path) -> str:
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):  # dangling, or a loop (ELOOP / RuntimeError)
            return BROKEN_SYMLINK
        if target != self.root and self.root not in target.parents:
            return SYMLINK_OUTSIDE
        return SYMLINK

    def _file(self, path: Path, rel: str, specs: list[_Spec], is_link: bool) -> SourceFile | Skip:
        if reason := self._name_reason(rel, specs):
            return Skip(rel, reason)
        if is_link:
            return Skip(rel, self._link_reason(path))
        try:
            st = path.stat(follow_symlinks=False)
        except OSError:
            return Skip(rel, UNREADABLE)
        if not stat.S_ISREG(st.st_mode):
            return Skip(rel, NOT_REGULAR)
        if st.st_size > self.max_file_bytes:
            return Skip(rel, TOO_LARGE)
        try:
            with open(path, "rb") as fh:
                sample = fh.read(_SAMPLE_BYTES)
        except OSError:
            return Skip(rel, UNREADABLE)
        if reason := _content_reason(sample, truncated=st.st_size > len(sample)):
            return Skip(rel, reason)
        first_line = sample.split(b"\n", 1)[0][:200].decode("utf-8", errors="replace")
        language = language_for_path(rel, first_line)
        return SourceFile(path, rel, st.st_size, st.st_mtime_ns, language)

    # -- one path, for watch mode and `cs chunks FILE`

    def check(self, rel: str) -> SourceFile | Skip | None:
        """Judge one path (relative to the root) by the same rules as a walk: the SourceFile, the
        Skip saying why not, or None when the path no longer exists and no name rule excludes it."""
        if rel.startswith("/") or ".." in rel.split("/"):
            return Skip(rel, OUTSIDE_ROOT)  # watch events can name paths beyond the root
        rel = rel.strip("/")
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        rel = "/".join(parts)
        specs = list(self._base_specs) + self._dir_specs(self.root)
        directory = self.root
        for i, part in enumerate(parts[:-1]):
            directory = directory / part
            sub_rel = "/".join(parts[: i + 1])
            if os.path.islink(directory):
                return Skip(sub_rel + "/", self._link_reason(directory))
            if reason := self._dir_reason(directory, sub_rel, specs):
                return Skip(sub_rel + "/", reason)
            specs += self._dir_specs(directory)
        path = self.root / rel
        if os.path.islink(path):
            return self._file(path, rel, specs, is_link=True)
        if os.path.isdir(path):
            reason = self._dir_reason(path, rel, specs)
            return Skip(rel + "/", reason) if reason else None
        if not os.path.lexists(path):
            reason = self._name_reason(rel, specs)
            return Skip(rel, reason) if reason else None
        return self._file(path, rel, specs, is_link=False)


def sources_for_path(
    path: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[list[SourceFile], list[Skip]]:
    """The files behind a PATH a user typed: a tree is discovered by the usual rules; a single
    file is taken as asked (ignore rules do not apply to it), relative to its repository top (or
    its directory), but a binary, oversized or unreadable file is a UsageError."""
    path = Path(path).expanduser()
    if os.path.islink(path) and not os.path.exists(path):
        raise UsageError(f"broken symlink: {path}", hint="give a file or directory that exists")
    if not os.path.exists(path):
        raise UsageError(f"no such file or directory: {path}")
    if os.path.isdir(path):
        discovery = Discovery(path, max_file_bytes=max_file_bytes)
        files = list(discovery)
        return files, discovery.skipped
    resolved = path.resolve()
    root = _git_toplevel(resolved.parent) or resolved.parent
    rel = resolved.relative_to(root).as_posix()
    try:
        st = resolved.stat()
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}") from err
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"not a regular file: {path}", hint="give a source file or a directory")
    if st.st_size > max_file_bytes:
        raise UsageError(
            f"{path} is too large ({st.st_size} bytes; the limit is {max_file_bytes})",
            hint="cs skips files over the size cap; raise it with --max-file-bytes",
        )
    try:
        with open(resolved, "rb") as fh:
            sample = fh.read(_SAMPLE_BYTES)
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}") from err
    if b"\0" in sample or os.path.splitext(rel)[1].lower() in BINARY_SUFFIXES:
        raise UsageError(f"{path} is a binary file", hint="cs chunks reads text files")
    first_line = sample.split(b"\n", 1)[0][:200].decode("utf-8", errors="replace")
    source = SourceFile(
        resolved, rel, st.st_size, st.st_mtime_ns, language_for_path(rel, first_line)
    )
    return [source], []


def chunks_for_path(path: Path, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
                    ) -> tuple[int, list[Chunk], list[Skip]]:
    """``cs chunks``: the files behind ``path`` (:func:`sources_for_path`) cut into chunks.
    Returns how many files were offered, their chunks, and what was skipped (a file that cannot
    be read is skipped as unreadable)."""
    files, skipped = sources_for_path(path, max_file_bytes=max_file_bytes)
    chunks: list[Chunk] = []
    for source in files:
        try:
            text = read_source(source)
        except UnreadableFileError:
            skipped.append(Skip(source.rel, UNREADABLE))
            continue
        chunks.extend(chunk_source(text, source.rel, source.language, max_tokens=max_tokens))
    return len(files), chunks, skipped


def _content_reason(sample: bytes, *, truncated: bool) -> str | None:
    """Binary, minified or generated, judged from the first bytes of a file."""
    if b"\0" in sample:
        return BINARY
    lines = sample.split(b"\n")
    if truncated and len(lines) > 1:
        lines = lines[:-1]  # the last line of a partial read is cut short
    longest = max(len(line) for line in lines)
    mean = sum(len(line) for line in lines) / len(lines)
    if longest >= _MINIFIED_ANY_LINE or (longest >= _MINIFIED_LONGEST and mean >= _MINIFIED_MEAN):
        return MINIFIED
    head = b"\n".join(lines[:5])[:2000]
    if b"@generated" in head or b"DO NOT EDIT" in head:
        return GENERATED
    return None


def is_ignored(root: Path, rel: str) -> bool:
    """Would discovery of ``root`` skip the path ``rel``? (For watch mode: events on such paths
    need no re-index.) A path that no longer exists is judged by its name and ignore rules only."""
    return isinstance(Discovery(root).check(rel), Skip)

"""File discovery: ignore files at every level, default skips, symlinks, bad files, is_ignored."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from codesearch.errors import UsageError
from codesearch.source.discover import Discovery, Skip, SourceFile, is_ignored, read_source

IGNORE_RULES = Path(__file__).resolve().parent.parent / "fixtures" / "ignore-rules"


def materialize(src: Path, dest: Path) -> Path:
    """Copy a fixture repository, turning `dot-x` names into `.x` (ignore files and `.git` cannot
    be committed under their real names: the project's own git would obey or refuse them)."""
    shutil.copytree(src, dest, symlinks=True)
    for path in sorted(dest.rglob("dot-*"), key=lambda p: len(p.parts), reverse=True):
        path.rename(path.with_name("." + path.name[len("dot-") :]))
    return dest


@pytest.fixture
def ignore_rules_repo(tmp_path: Path) -> Path:
    """fixtures/ignore-rules materialized (``dot-x`` names turned into ``.x``): a tree of ignore
    files, secrets, vendored and odd files, unlike the other fixture repositories (conftest)."""
    return materialize(IGNORE_RULES, tmp_path / "repo")


def walk(root: Path, **options: object) -> tuple[list[str], dict[str, str]]:
    discovery = Discovery(root, **options)  # type: ignore[arg-type]
    files = [f.rel for f in discovery]
    return files, {s.rel: s.reason for s in discovery.skipped}


EXPECTED_FILES = [
    ".csignore",
    ".gitignore",
    "README.md",
    "app/.gitignore",
    "app/crlf.py",
    "app/keep.tmp",
    "app/legacy.py",
    "app/main.py",
    "app/util.py",
    "docs/guide.md",
    "important.tmp",
    "scripts/run",
]
EXPECTED_SKIPS = {
    ".env": "secret",
    ".env.production": "secret",
    ".git/": "vcs",
    "Cargo.lock": "lockfile",
    "api/service_pb2.py": "generated",
    "app/cache.tmp": "gitignored",
    "app/scratch.py": "gitignored",
    "app/test_view.snapshot.py": "csignored",
    "assets/blob.xyz": "binary",
    "assets/logo.png": "binary",
    "certs/server.pem": "secret",
    "data/sample.csv": "data file",
    "deploy.key": "secret",
    "docs/drafts/": "csignored",
    "gen/models.go": "generated",
    "generated/": "gitignored",
    "keys/id_rsa": "secret",
    "keys/id_rsa.pub": "secret",
    "local-only.py": "gitignored",
    "myenv/": "vendored",
    "node_modules/": "vendored",
    "package-lock.json": "lockfile",
    "poetry.lock": "lockfile",
    "static/app.min.js": "minified",
    "static/bundle.js": "minified",
    "target/": "vendored",
    "vendor/": "vendored",
}


def test_every_rule_of_the_fixture_repository(ignore_rules_repo: Path) -> None:
    files, skips = walk(ignore_rules_repo)
    assert files == EXPECTED_FILES  # sorted, stable order
    assert skips == EXPECTED_SKIPS


def test_counts_tally_skips_by_reason(ignore_rules_repo: Path) -> None:
    discovery = Discovery(ignore_rules_repo)
    list(discovery)
    counts = discovery.counts()
    assert counts["secret"] == 6
    assert counts["gitignored"] == 4
    assert sum(counts.values()) == len(EXPECTED_SKIPS)
    # iterating again starts the tally afresh
    list(discovery)
    assert discovery.counts() == counts


def test_source_file_fields_and_languages(ignore_rules_repo: Path) -> None:
    by_rel = {f.rel: f for f in Discovery(ignore_rules_repo)}
    main = by_rel["app/main.py"]
    assert main.path == (ignore_rules_repo / "app" / "main.py").resolve()
    assert main.size == (ignore_rules_repo / "app" / "main.py").stat().st_size
    assert main.mtime_ns == (ignore_rules_repo / "app" / "main.py").stat().st_mtime_ns
    assert main.language == "python"
    assert by_rel["scripts/run"].language == "python"  # from its #! line
    assert by_rel["docs/guide.md"].language == "markdown"
    assert by_rel["important.tmp"].language is None
    assert by_rel[".gitignore"].language is None


def test_include_vendored_and_secrets(ignore_rules_repo: Path) -> None:
    files, skips = walk(ignore_rules_repo, include_vendored=True, include_secrets=True)
    assert {
        ".env",
        ".env.production",
        "certs/server.pem",
        "deploy.key",
        "keys/id_rsa",
        "keys/id_rsa.pub",
        "node_modules/leftpad/index.js",
        "vendor/github.com/pkg/pkg.go",
        "target/debug/build.rs",
        "myenv/lib/site.py",
        "myenv/pyvenv.cfg",
    } <= set(files)
    assert "secret" not in skips.values() and "vendored" not in skips.values()
    assert skips[".git/"] == "vcs"  # never searched


def test_build_dist_and_venv_dirs_are_vendored(ignore_rules_repo: Path) -> None:
    # made here: the project's own .gitignore keeps build/, dist/ and .venv/ out of the fixture
    for name in ("build", "dist", ".venv", "pkg.egg-info", "__pycache__"):
        (ignore_rules_repo / "app" / name).mkdir()
        (ignore_rules_repo / "app" / name / "x.py").write_text("x = 1\n")
    (ignore_rules_repo / "app" / "build" / "x.o").write_bytes(b"\x7fELF")  # a build artefact
    _, skips = walk(ignore_rules_repo)
    for name in ("build", "dist", ".venv", "pkg.egg-info", "__pycache__"):
        assert skips[f"app/{name}/"] == "vendored"


def test_gitignore_above_the_root_applies(ignore_rules_repo: Path) -> None:
    # indexing a subdirectory of a repository still obeys the repository's outer ignore files
    files, skips = walk(ignore_rules_repo / "app")
    assert skips["cache.tmp"] == "gitignored"  # *.tmp from the top .gitignore
    assert skips["scratch.py"] == "gitignored"
    assert "keep.tmp" in files  # re-included by app/.gitignore
    assert "main.py" in files


def test_gitignore_outside_a_repository_is_not_inherited(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.py\n")  # no .git: this directory is not a repository
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text("a = 1\n")
    files, _ = walk(tmp_path / "sub")
    assert files == ["a.py"]


def test_size_cap_is_configurable(ignore_rules_repo: Path) -> None:
    big = ignore_rules_repo / "app" / "big.py"
    big.write_text("x = 1\n" * 400_000)  # 2.4 MB, over the 1 MiB default
    _, skips = walk(ignore_rules_repo)
    assert skips["app/big.py"] == "too large"
    files, skips = walk(ignore_rules_repo, max_file_bytes=64)
    assert skips["app/main.py"] == "too large"
    assert "app/util.py" in files  # 47 bytes


def test_symlinks_are_never_followed(ignore_rules_repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret_code.py").write_text("def leaked(): pass\n")
    (ignore_rules_repo / "out_dir").symlink_to(outside)
    (ignore_rules_repo / "out_file.py").symlink_to(outside / "secret_code.py")
    (ignore_rules_repo / "alias.py").symlink_to(ignore_rules_repo / "app" / "main.py")
    (ignore_rules_repo / "dangling.py").symlink_to(ignore_rules_repo / "missing.py")
    (ignore_rules_repo / "self.py").symlink_to(ignore_rules_repo / "self.py")  # a loop of one
    (ignore_rules_repo / "app" / "loop").symlink_to(ignore_rules_repo)  # a directory loop
    files, skips = walk(ignore_rules_repo)
    assert skips["out_dir"] == "symlink outside root"
    assert skips["out_file.py"] == "symlink outside root"
    assert skips["alias.py"] == "symlink"  # its target is indexed under its own path
    assert skips["dangling.py"] == "broken symlink"
    assert skips["self.py"] == "broken symlink"
    assert skips["app/loop"] == "symlink"
    assert files == EXPECTED_FILES


def test_fifo_is_not_read(ignore_rules_repo: Path) -> None:
    os.mkfifo(ignore_rules_repo / "app" / "pipe.py")  # opening it would block forever
    _, skips = walk(ignore_rules_repo)
    assert skips["app/pipe.py"] == "not a regular file"


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block without root's power to read anything (permission bits do not stop root)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_unreadable_files_and_directories_are_skipped() -> None:
    # a world-traversable directory, so the unprivileged walk can reach it
    base = Path(tempfile.mkdtemp(prefix="cs-unreadable-"))
    try:
        base.chmod(0o755)
        (base / "ok.py").write_text("ok = 1\n")
        (base / "ok.py").chmod(0o644)
        (base / "locked.py").write_text("hidden = 1\n")
        (base / "locked.py").chmod(0o000)
        (base / "private").mkdir()
        (base / "private" / "a.py").write_text("a = 1\n")
        (base / "private").chmod(0o000)
        with unprivileged():
            files, skips = walk(base)
        assert files == ["ok.py"]
        assert skips == {"locked.py": "unreadable", "private/": "unreadable"}
    finally:
        (base / "private").chmod(0o755)
        shutil.rmtree(base)


def test_read_source_keeps_line_numbers_for_broken_utf8(ignore_rules_repo: Path) -> None:
    legacy = next(f for f in Discovery(ignore_rules_repo) if f.rel == "app/legacy.py")
    text = read_source(legacy)
    raw_lines = (ignore_rules_repo / "app" / "legacy.py").read_bytes().split(b"\n")
    assert len(text.split("\n")) == len(raw_lines)
    assert text.split("\n")[0] == "# caf\ufffd menu"
    assert text.split("\n")[4] == "def price(item):"


def test_read_source_drops_a_bom_and_reports_vanished_files(tmp_path: Path) -> None:
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbfx = 1\n")
    source = next(iter(Discovery(tmp_path)))
    assert read_source(source) == "x = 1\n"
    (tmp_path / "bom.py").unlink()
    with pytest.raises(OSError, match="cannot read bom.py"):
        read_source(source)


def test_missing_or_file_root_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such directory"):
        Discovery(tmp_path / "nope")
    (tmp_path / "f.py").write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        Discovery(tmp_path / "f.py")


@pytest.mark.parametrize(
    ("rel", "ignored"),
    [
        ("app/main.py", False),
        ("app/cache.tmp", True),  # gitignored
        ("app/keep.tmp", False),  # re-included by the nested .gitignore
        ("app/scratch.py", True),  # nested .gitignore
        ("local-only.py", True),  # .git/info/exclude
        ("docs/drafts/plan.md", True),  # .csignore directory
        ("generated/models.py", True),
        ("node_modules/leftpad/index.js", True),
        ("node_modules/not/created/yet.js", True),  # judged by its directory
        (".git/HEAD", True),
        (".env", True),
        ("assets/logo.png", True),
        ("static/bundle.js", True),  # judged by content when it exists
        ("app/new_module.py", False),  # does not exist (deleted, or not written yet)
        ("app/old.tmp", True),  # does not exist, but its name is ignored
        ("Cargo.lock", True),
        ("../elsewhere.py", True),  # outside the root
        ("./app/main.py", False),
    ],
)
def test_is_ignored(ignore_rules_repo: Path, rel: str, ignored: bool) -> None:
    assert is_ignored(ignore_rules_repo, rel) is ignored


def test_check_agrees_with_the_walk(ignore_rules_repo: Path) -> None:
    discovery = Discovery(ignore_rules_repo)
    walked = {f.rel: f for f in discovery}
    for rel, source in walked.items():
        assert discovery.check(rel) == source
    for rel, reason in EXPECTED_SKIPS.items():
        result = discovery.check(rel)
        assert isinstance(result, Skip) and result.reason == reason, rel
        assert isinstance(result, Skip) and result.rel == rel
    assert not isinstance(discovery.check("app/main.py"), Skip)
    assert isinstance(discovery.check("app/main.py"), SourceFile)


SPHINX_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <title>Session Basics &#8212; SQLAlchemy 2.0 Documentation</title>
</head>
<body><div class="body"><h1>Session Basics</h1><p>What does the Session do?</p></div></body>
</html>
"""


def test_sphinx_html_output_is_generated(tmp_path: Path) -> None:
    # the layout of the SQLAlchemy sdist: built pages in doc/, the sources in doc/build/
    doc = tmp_path / "doc"
    (doc / "orm").mkdir(parents=True)
    (doc / "_modules" / "sqlalchemy").mkdir(parents=True)
    (doc / "_static").mkdir()
    (doc / "genindex.html").write_text(SPHINX_PAGE)
    (doc / "searchindex.js").write_text('Search.setIndex({"docnames": ["index"]})\n')
    (doc / "orm" / "session_basics.html").write_text(SPHINX_PAGE)  # no marker in orm/ itself
    (doc / "_modules" / "sqlalchemy" / "engine.html").write_text(SPHINX_PAGE)
    (doc / "_static" / "site.js").write_text("var x = 1;\n")
    (tmp_path / "api" / "_build" / "html").mkdir(parents=True)
    (tmp_path / "api" / "_build" / "html" / "index.html").write_text(SPHINX_PAGE)
    (tmp_path / "lib.py").write_text("x = 1\n")
    files, skips = walk(tmp_path)
    assert files == ["lib.py"]
    assert skips == {
        "api/_build/": "generated",
        "doc/_modules/": "generated",
        "doc/_static/": "generated",
        "doc/genindex.html": "generated",
        "doc/orm/session_basics.html": "generated",
        "doc/searchindex.js": "generated",
    }


def test_html_with_a_generator_meta_tag_is_generated(tmp_path: Path) -> None:
    (tmp_path / "api.html").write_text(
        '<html><head><meta name="generator" content="Doxygen 1.9.8"/></head><body/></html>\n')
    (tmp_path / "ref.html").write_text(
        '<html><head><meta name="generator" content="pdoc 14.1.0"/></head><body/></html>\n')
    (tmp_path / "page.html").write_text(
        '<html><head><meta name="generator" content="Docutils 0.20: https://docutils.sf.io/"'
        " /></head><body/></html>\n")
    (tmp_path / "Foo.html").write_text("<!-- Generated by javadoc (17) -->\n<html></html>\n")
    # hand-written HTML (no generator tag, outside any Sphinx output) is still indexed
    (tmp_path / "index.html").write_text(
        '<html><head><meta name="viewport" content="width=device-width"></head>\n'
        "<body><h1>My app</h1></body></html>\n")
    files, skips = walk(tmp_path)
    assert files == ["index.html"]
    assert skips == {n: "generated" for n in ("Foo.html", "api.html", "page.html", "ref.html")}


def test_a_build_folder_of_sources_is_indexed(tmp_path: Path) -> None:
    # SQLAlchemy keeps its Sphinx sources in doc/build/: no build artefact there
    build = tmp_path / "doc" / "build"
    (build / "orm").mkdir(parents=True)
    (build / "conf.py").write_text("project = 'SQLAlchemy'\n")
    (build / "index.rst").write_text("SQLAlchemy\n==========\n")
    (build / "orm" / "session.rst").write_text("Session\n=======\n")
    (build / "_static").mkdir()
    (build / "_static" / "docs.css").write_text("body { margin: 0; }\n")
    (build / "templates").mkdir()
    (build / "templates" / "layout.html").write_text("<div>{{ body }}</div>\n")
    # ... next to the pages built from them (the sdist ships both)
    (tmp_path / "doc" / "genindex.html").write_text(SPHINX_PAGE)
    files, skips = walk(tmp_path)
    assert files == ["doc/build/_static/docs.css", "doc/build/conf.py", "doc/build/index.rst",
                     "doc/build/orm/session.rst", "doc/build/templates/layout.html"]
    assert skips == {"doc/genindex.html": "generated"}


def test_a_python_build_folder_stays_vendored(tmp_path: Path) -> None:
    # setup.py build / bdist_wheel: build/lib/<package>/ next to build/bdist.<platform>/
    (tmp_path / "build" / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "build" / "lib" / "pkg" / "core.py").write_text("x = 1\n")
    (tmp_path / "build" / "bdist.linux-x86_64").mkdir()
    (tmp_path / "build" / "notes.md").write_text("# notes\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "core.py").write_text("x = 1\n")
    files, skips = walk(tmp_path)
    assert files == ["pkg/core.py"]
    assert skips == {"build/": "vendored"}


def test_a_build_folder_git_tracks_is_indexed(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "lib").mkdir()  # would look like build output, but git tracks it
    (tmp_path / "build" / "lib" / "release.sh").write_text("#!/bin/sh\necho release\n")
    (tmp_path / "build" / "bdist.sh").write_text("#!/bin/sh\necho bdist\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "build"], check=True)
    files, skips = walk(tmp_path)
    assert files == ["build/bdist.sh", "build/lib/release.sh"]

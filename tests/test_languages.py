"""The languages cs knows (codesearch.source.languages): which language a file is in, from its name
or its #! line, and which have a bundled tree-sitter grammar. How each grammar's definitions are
chunked is in test_chunk.py."""

from __future__ import annotations

import pytest

from codesearch.source.languages import (
    get_language,
    get_parser,
    language_for_path,
    language_for_shebang,
    supported_languages,
)
from tests.test_chunk import EXPECTED, LANGUAGE_OF

# --- grammars ------------------------------------------------------------------------------------


def test_every_language_of_the_issue_has_a_bundled_grammar_and_a_fixture() -> None:
    wanted = {"python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp"}
    wanted |= {"csharp", "ruby", "php", "kotlin", "swift", "bash"}
    assert wanted <= set(supported_languages())
    for name in wanted:
        assert get_parser(name).parse(b"x").root_node is not None  # offline, no download
    covered = {"tsx" if p.endswith(".tsx") else LANGUAGE_OF[p.split("/")[0]] for p in EXPECTED}
    assert covered == wanted


def test_text_languages_have_no_grammar_and_unknown_names_no_language() -> None:
    assert get_language("python") is not None and get_language("python").grammar
    markdown = get_language("markdown")
    assert markdown is not None and not markdown.grammar
    assert "markdown" not in supported_languages() and "json" not in supported_languages()
    assert get_language("cobol") is None and get_language(None) is None


# --- from the file name --------------------------------------------------------------------------


@pytest.mark.parametrize("rel, language", [
    ("src/app.py", "python"), ("stubs/app.pyi", "python"), ("web/index.js", "javascript"),
    ("web/lib.mjs", "javascript"), ("web/view.jsx", "javascript"), ("web/api.ts", "typescript"),
    ("web/view.tsx", "tsx"), ("cmd/main.go", "go"), ("src/lib.rs", "rust"),
    ("Main.java", "java"), ("lib/x.c", "c"), ("lib/x.h", "c"), ("lib/x.cpp", "cpp"),
    ("lib/x.hpp", "cpp"), ("lib/x.cc", "cpp"), ("App.cs", "csharp"), ("lib/x.rb", "ruby"),
    ("index.php", "php"), ("App.kt", "kotlin"), ("build.gradle.kts", "kotlin"),
    ("App.swift", "swift"), ("run.sh", "bash"), ("README.md", "markdown"),
    ("conf/app.yml", "yaml"), ("pyproject.toml", "toml"), ("schema.sql", "sql"),
    ("api.proto", "protobuf"), ("docs/index.rst", "restructuredtext"),
])
def test_language_from_the_extension(rel: str, language: str) -> None:
    assert language_for_path(rel) == language


def test_extensions_ignore_case_and_a_few_names_are_languages() -> None:
    assert language_for_path("LEGACY.PY") == "python"
    for name, language in [("Dockerfile", "dockerfile"), ("Dockerfile.dev", "dockerfile"),
                           ("Makefile", "makefile"), ("GNUmakefile", "makefile"),
                           ("CMakeLists.txt", "cmake"), ("Gemfile", "ruby"),
                           ("Rakefile", "ruby"), ("home/.bashrc", "bash"),
                           ("home/.zshrc", "bash")]:
        assert language_for_path(name) == language, name
    assert language_for_path("notes.txt") is None and language_for_path("LICENSE") is None
    assert language_for_path("data.bin") is None and language_for_path(".gitignore") is None


# --- from the #! line ----------------------------------------------------------------------------


@pytest.mark.parametrize("line, language", [
    ("#!/usr/bin/env python3", "python"), ("#!/usr/bin/python3.11", "python"),
    ("#!/usr/bin/env -S python3 -u", "python"), ("#! /usr/bin/python2", "python"),
    ("#!/bin/sh", "bash"), ("#!/usr/bin/env bash", "bash"), ("#!/bin/zsh -f", "bash"),
    ("#!/usr/bin/env node", "javascript"), ("#!/usr/bin/ruby -w", "ruby"),
    ("#!/usr/bin/env php", "php"),
    ("#!/usr/bin/perl", None), ("#!/usr/bin/env", None), ("#!", None),
])
def test_language_from_the_shebang(line: str, language: str | None) -> None:
    assert language_for_shebang(line) == language
    assert language_for_path("bin/tool", line) == language  # a name without an extension


def test_the_name_wins_over_the_shebang() -> None:
    assert language_for_path("tool.rb", "#!/usr/bin/env python3") == "ruby"
    assert language_for_path("Makefile", "#!/bin/sh") == "makefile"
    assert language_for_path("notes.txt", "#!/bin/sh") == "bash"  # no language from the name
    assert language_for_path("bin/tool", "# not a shebang: python") is None
    assert language_for_path("bin/tool") is None

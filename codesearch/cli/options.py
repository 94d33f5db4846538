"""The options several commands share, and turning their raw values into core values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from codesearch.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.location import IndexSettings
    from codesearch.query.request import SearchOptions


def notice(message: str) -> None:
    """A one-line notice on stderr (what the core reports through ``notify``)."""
    typer.echo(message, err=True)


def _use_precision(value: str | None) -> str | None:
    """--precision goes into CS_PRECISION, where every model loader reads it (the indexer, the
    searcher, watch, serve and their workers), so no command has to pass it along."""
    if value is not None:
        if value not in ("auto", "fp32", "bf16", "int8"):
            raise UsageError(f"unknown precision '{value}'", hint="use auto, fp32, bf16 or int8")
        os.environ["CS_PRECISION"] = value
    return value


Precision = Annotated[str | None, typer.Option(
    "--precision", envvar="CS_PRECISION", callback=_use_precision, show_default=False,
    help="auto, fp32, bf16 or int8 (int8: CPU, ONNX Runtime; bf16 needs the `torch` extra). "
         "auto: on a CPU the "
         "fastest measured that agrees with fp32; an existing index keeps its own.")]
IndexDir = Annotated[
    Path | None,
    typer.Option("--index-dir", help="Directory holding per-root indexes [env CS_INDEX_DIR].",
                 show_default=False),
]
IndexUri = Annotated[
    str | None,
    typer.Option("--index-uri", help="The index itself: a path or s3://bucket/prefix "
                 "[env CS_INDEX_URI].", show_default=False),
]
StorageOpts = Annotated[
    list[str] | None,
    typer.Option("--storage-option", help="KEY=VALUE for the object store (repeatable).",
                 show_default=False),
]
Model = Annotated[
    str | None,
    typer.Option("--model", help="Preset, hub id or model directory (default: the index's own "
                 "model, else CS_MODEL, else jina-code-0.5b).", show_default=False),
]
Device = Annotated[str | None, typer.Option("--device", help="cpu, cuda or cuda:N.",
                                            show_default=False)]
Dim = Annotated[int | None, typer.Option("--dim", help="Vector dimension (Matryoshka).",
                                         show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="A JSON array of results.")]
RootPath = Annotated[Path, typer.Option("--path", "-p", help="The indexed root.")]


def index_settings(index_dir: Path | None, index_uri: str | None,
                   storage_option: list[str] | None) -> IndexSettings:
    """--index-dir, --index-uri and --storage-option KEY=VALUE as one value."""
    from codesearch.location import IndexSettings

    options: dict[str, str] = {}
    for item in storage_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--storage-option expects KEY=VALUE, got '{item}'")
        options[key.strip()] = value
    return IndexSettings(index_dir, index_uri, options)


def search_options(k: int, lang: list[str] | None, glob: list[str] | None,
                   min_score: float | None, mode: str | None, task: str | None) -> SearchOptions:
    """The query options as typed (``--lang`` also comma-separated)."""
    from codesearch.query.request import SearchOptions

    languages = tuple(v.strip() for raw in lang or [] for v in raw.split(",") if v.strip())
    return SearchOptions(k=k, languages=languages, globs=tuple(glob or ()), min_score=min_score,
                         mode=mode, task=task)

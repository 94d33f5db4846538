"""``cs model list|pull|info|export``, ``cs embed`` and ``cs chunks``: the model and the chunker on
their own, for scripts and for checking what cs would do."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codesearch.cli.app import app, sub_app
from codesearch.cli.options import Precision, notice

model_app = sub_app("List, download, describe and export embedding models.")
app.add_typer(model_app, name="model")


@app.command("chunks")
def chunks_cmd(
    path: Annotated[Path, typer.Argument(help="A source file or a directory tree.")],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON array of {path, language, kind, symbol, start_line, end_line, "
            "text, hash}.",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list each skipped file and why.")
    ] = False,
    max_tokens: Annotated[
        int, typer.Option(help="Token budget per chunk; longer definitions are split.", min=64)
    ] = 512,
    max_file_bytes: Annotated[
        int, typer.Option(help="Skip files larger than this many bytes.", min=1)
    ] = 1 << 20,
) -> None:
    """Show the chunks cs would embed for a file or a tree, and what it skipped."""
    from codesearch.render import print_chunk_summary, print_chunks
    from codesearch.source.discover import chunks_for_path

    files, chunks, skipped = chunks_for_path(path, max_tokens=max_tokens,
                                             max_file_bytes=max_file_bytes)
    print_chunks(chunks, as_json=as_json)
    print_chunk_summary(files, chunks, skipped, verbose=verbose)


@app.command("embed")
def embed_cmd(
    texts: Annotated[list[str], typer.Argument(help="Texts to embed, one vector each.")],
    task: Annotated[
        str, typer.Option(help="nl2code, qa, code2code, code2nl or code2completion.")
    ] = "nl2code",
    side: Annotated[str, typer.Option(help="query or document: which prefix the texts get.")] = (
        "query"
    ),
    dim: Annotated[int | None, typer.Option(help="Output dimension (Matryoshka).")] = None,
    model: Annotated[str | None, typer.Option(help="Preset, hub id or model directory.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N.")] = None,
    pooling: Annotated[str | None, typer.Option(help="last, mean or cls.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per text, then cut.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32 or bfloat16.")] = None,
    precision: Precision = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of vectors, in input order.")
    ] = False,
) -> None:
    """Print the embedding of each TEXT (for scripts, and for checking prefixes and pooling)."""
    from codesearch.embed import load_embedder
    from codesearch.embed.presets import check_side, check_task
    from codesearch.render import print_vectors

    check_task(task)
    check_side(side)
    embedder = load_embedder(model, dim=dim, device=device, pooling=pooling,
                             max_length=max_length, dtype=dtype, notify=notice)
    print_vectors(embedder.embed(texts, task=task, side=side), as_json=as_json)


@model_app.command("list")
def model_list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of objects.")] = False,
) -> None:
    """List the model presets with licence, size and whether they are on this machine."""
    from codesearch.embed.catalog import preset_rows
    from codesearch.render import print_models

    print_models(preset_rows(), as_json=as_json)


@model_app.command("pull")
def model_pull_cmd(
    name: Annotated[
        str | None, typer.Argument(help="Preset or hub id (default: the default model).")
    ] = None,
) -> None:
    """Download a model into the Hugging Face cache (at its pinned revision) so it works offline."""
    from codesearch.embed.catalog import pull

    typer.echo(pull(name, notify=notice))


@model_app.command("info")
def model_info_cmd(
    name: Annotated[str | None, typer.Argument(help="Preset, hub id or local directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Describe a model: where it comes from, licence, dims, pooling, prefixes, cache state."""
    from codesearch.embed.catalog import model_info
    from codesearch.render import print_model_info

    print_model_info(model_info(name, notify=notice), as_json=as_json)



@model_app.command("export")
def model_export_cmd(
    name: Annotated[str, typer.Argument(help="Preset, hub id or local model directory.")],
    out: Annotated[Path, typer.Option("--out", help="A new directory to write the model to.")],
) -> None:
    """Export a model to ONNX (needs torch) as a directory that `--model DIR` loads anywhere,
    torch or not (its vectors match the original's)."""
    from codesearch.embed.catalog import export

    typer.echo(export(name, out, notify=notice))

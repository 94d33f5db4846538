"""The `cs` command line: parse arguments, call the core, render, map errors to exit codes.
Nothing else.

Heavy libraries (torch, transformers, lancedb) are imported inside commands so `cs --help` stays
fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from codesearch.errors import CodeSearchError, ExitCode


class _Group(TyperGroup):
    """Turns CodeSearchError and Ctrl-C into one stderr line and a named exit code, for every
    command (also under typer's CliRunner, which bypasses main())."""

    def invoke(self, ctx: Any) -> Any:  # click's Context (typer vendors its own click)
        try:
            return super().invoke(ctx)
        except CodeSearchError as err:
            _error(err)
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


app = typer.Typer(
    cls=_Group,
    name="cs",
    help="Search a code base by meaning. Index with `cs index`, then `cs find \"what it does\"`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(cls=_Group, help="List, download and describe embedding models.",
                        no_args_is_help=True)
app.add_typer(model_app, name="model")


def _error(err: CodeSearchError) -> NoReturn:
    """Print one error line (and its hint) to stderr, then exit with its code."""
    from codesearch.render import print_error

    print_error(err)
    raise typer.Exit(int(err.exit_code))


@app.callback()
def _root() -> None:
    """Search a code base by meaning."""


# --- chunks -----------------------------------------------------------------------------------

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
    from codesearch.source.chunk import chunk_source
    from codesearch.source.discover import (
        UNREADABLE,
        Skip,
        UnreadableFileError,
        read_source,
        sources_for_path,
    )

    files, skipped = sources_for_path(path, max_file_bytes=max_file_bytes)
    chunks = []
    for source in files:
        try:
            text = read_source(source)
        except UnreadableFileError:
            skipped.append(Skip(source.rel, UNREADABLE))
            continue
        chunks.extend(chunk_source(text, source.rel, source.language, max_tokens=max_tokens))
    print_chunks(chunks, as_json=as_json)
    print_chunk_summary(len(files), chunks, skipped, verbose=verbose)


# --- embed, model -----------------------------------------------------------------------------


def _notice(message: str) -> None:
    typer.echo(message, err=True)


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _use_precision(value: str | None) -> str | None:
    """--precision goes into CS_PRECISION, where every model loader reads it (the indexer, the
    searcher, watch, serve and their workers), so no command has to pass it along."""
    if value is not None:
        if value not in ("auto", "fp32", "bf16", "int8"):
            from codesearch.errors import UsageError

            raise UsageError(f"unknown precision '{value}'", hint="use auto, fp32, bf16 or int8")
        os.environ["CS_PRECISION"] = value
    return value


_Precision = Annotated[str | None, typer.Option(
    "--precision", envvar="CS_PRECISION", callback=_use_precision, show_default=False,
    help="auto, fp32, bf16 or int8 (int8: CPU, needs the `fast` extra). auto: on a CPU the "
         "fastest measured that agrees with fp32; an existing index keeps its own.")]


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
    precision: _Precision = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of vectors, in input order.")
    ] = False,
) -> None:
    """Print the embedding of each TEXT (for scripts, and for checking prefixes and pooling)."""
    import json

    from codesearch.embed import load_embedder
    from codesearch.embed.presets import check_side, check_task

    check_task(task)
    check_side(side)
    embedder = load_embedder(
        model,
        dim=dim,
        device=device,
        pooling=pooling,
        max_length=max_length,
        dtype=dtype,
        notify=_notice,
    )
    vectors = embedder.embed(texts, task=task, side=side)
    if as_json:
        typer.echo(json.dumps([[float(x) for x in row] for row in vectors]))
        return
    for row in vectors:
        typer.echo(" ".join(f"{x:.6f}" for x in row))


@model_app.command("list")
def model_list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of objects.")] = False,
) -> None:
    """List the model presets with licence, size and whether they are on this machine."""
    import json

    from codesearch.config import default_model
    from codesearch.embed.hub import cache_state
    from codesearch.embed.presets import PRESETS

    rows: list[dict[str, Any]] = []
    for preset in PRESETS.values():
        state = cache_state(preset)
        rows.append(
            {
                "name": preset.name,
                "default": preset.name == default_model(),
                "hub_id": preset.hub_id,
                "revision": preset.revision,
                "params": preset.params,
                "dims": list(preset.dims),
                "default_dim": preset.default_dim,
                "licence": preset.licence,
                "size_bytes": state.size_bytes or preset.approx_bytes,
                "cached": state.cached,
                "source": state.source,
                "path": str(state.path) if state.path else None,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    header = f"{'NAME':<16} {'PARAMS':>6} {'DIMS':<24} {'LICENCE':<13} {'SIZE':>8}  STATE"
    typer.echo(header)
    for r in rows:
        dims = ",".join(str(d) for d in r["dims"])
        size = _fmt_bytes(r["size_bytes"]) if r["cached"] else "~" + _fmt_bytes(r["size_bytes"])
        name = r["name"] + (" *" if r["default"] else "")
        typer.echo(
            f"{name:<16} {r['params']:>6} {dims:<24} {r['licence']:<13} {size:>8}  {r['source']}"
        )
    typer.echo(
        "* default. jina-code weights are CC-BY-NC-4.0 (non-commercial); "
        "for other uses pick --model minilm or your own model."
    )


@model_app.command("pull")
def model_pull_cmd(
    name: Annotated[
        str | None, typer.Argument(help="Preset or hub id (default: the default model).")
    ] = None,
) -> None:
    """Download a model into the Hugging Face cache (at its pinned revision) so it works offline."""
    from codesearch.config import default_model
    from codesearch.embed.hub import cache_state, fetch
    from codesearch.embed.presets import PRESETS, preset_for_hub_id
    from codesearch.errors import ModelError

    target = name or default_model()
    hub_id, _, revision = target.partition("@")
    preset = PRESETS.get(target) or preset_for_hub_id(hub_id)
    if preset is not None:
        state = cache_state(preset)
        if state.cached and not revision:
            typer.echo(f"{preset.name} is already available ({state.source}): {state.path}")
            return
        hub_id, revision = preset.hub_id, revision or preset.revision
        _notice(f"{preset.name}: licence {preset.licence}.")
    elif "/" not in hub_id:
        raise ModelError(
            f"unknown model '{target}'",
            hint=f"use a preset ({', '.join(PRESETS)}) or a hub id like org/name",
        )
    path = fetch(hub_id, revision or "main", name=target, notify=_notice)
    typer.echo(f"{target}: {path}")


@model_app.command("info")
def model_info_cmd(
    name: Annotated[str | None, typer.Argument(help="Preset, hub id or local directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Describe a model: where it comes from, licence, dims, pooling, prefixes, cache state."""
    import json

    from codesearch.config import default_model
    from codesearch.embed.hub import cache_state
    from codesearch.embed.presets import PREFIX_SCHEMES, PRESETS
    from codesearch.embed.resolve import resolve_model

    target = name or default_model()
    info: dict[str, object]
    if target in PRESETS:
        p = PRESETS[target]
        state = cache_state(p)
        info = {
            "name": p.name,
            "hub_id": p.hub_id,
            "revision": p.revision,
            "description": p.description,
            "params": p.params,
            "licence": p.licence,
            "dims": list(p.dims),
            "default_dim": p.default_dim,
            "pooling": p.pooling,
            "prefix_scheme": p.prefix_scheme,
            "max_length": p.max_length,
            "cached": state.cached,
            "source": state.source,
            "path": str(state.path) if state.path else None,
            "size_bytes": state.size_bytes if state.cached else p.approx_bytes,
        }
    else:
        r = resolve_model(target, notify=_notice)
        info = {
            "name": r.name,
            "model_id": r.model_id,
            "revision": r.revision,
            "licence": r.licence,
            "dims": list(r.dims),
            "default_dim": r.default_dim,
            "pooling": r.pooling,
            "prefix_scheme": r.prefix_scheme,
            "max_length": r.max_length,
            "cached": True,
            "path": str(r.path),
        }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if key == "size_bytes":
            value = _fmt_bytes(value if isinstance(value, int) else None)
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        typer.echo(f"{key + ':':<15}{value}")
    scheme = PREFIX_SCHEMES.get(str(info["prefix_scheme"]))
    if scheme:
        typer.echo("prefixes:")
        for task, (query, document) in scheme.items():
            typer.echo(f"  {task:<16} query {query!r}  document {document!r}")


# --- index, find, similar, status -------------------------------------------------------------


_IndexDir = Annotated[
    Path | None,
    typer.Option("--index-dir", help="Directory holding per-root indexes [env CS_INDEX_DIR].",
                 show_default=False),
]
_IndexUri = Annotated[
    str | None,
    typer.Option("--index-uri", help="The index itself: a path or s3://bucket/prefix "
                 "[env CS_INDEX_URI].", show_default=False),
]
_StorageOpts = Annotated[
    list[str] | None,
    typer.Option("--storage-option", help="KEY=VALUE for the object store (repeatable).",
                 show_default=False),
]
_Model = Annotated[
    str | None,
    typer.Option("--model", help="Preset, hub id or model directory (default: the index's own "
                 "model, else CS_MODEL, else jina-code-0.5b).", show_default=False),
]
_Device = Annotated[str | None, typer.Option("--device", help="cpu, cuda or cuda:N.",
                                             show_default=False)]



def _storage_options(items: list[str] | None) -> dict[str, str]:
    from codesearch.errors import UsageError

    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--storage-option expects KEY=VALUE, got '{item}'")
        out[key.strip()] = value
    return out


def _split_list(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v.strip() for raw in values or [] for v in raw.split(",") if v.strip())


@app.command("index")
def index_cmd(
    root: Annotated[Path, typer.Argument(help="The source tree to index.")] = Path("."),
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the index and build it "
                                          "again (embeddings are still reused from the cache).")
                       ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")
                       ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List skipped files and why.")
                       ] = False,
    model: _Model = None,
    dim: Annotated[int | None, typer.Option("--dim", help="Vector dimension (Matryoshka).",
                                            show_default=False)] = None,
    device: _Device = None,
    precision: _Precision = None,
    index_dir: _IndexDir = None,
    index_uri: _IndexUri = None,
    storage_option: _StorageOpts = None,
    batch_files: Annotated[int, typer.Option("--batch-files", hidden=True,
                                             help="Files per committed batch.")] = 64,
    cache_uri: Annotated[str | None, typer.Option(
        "--cache-uri", help="The embedding cache: a path or s3://bucket/prefix, shareable "
        "between machines [env CS_CACHE_URI].", show_default=False)] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="Where chunks are embedded: local, or ray (a Ray cluster; "
        "pip install 'codesearch[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Ray cluster for --engine ray (default: RAY_ADDRESS, else a local "
        "Ray).", show_default=False)] = None,
    ray_workers: Annotated[int | None, typer.Option(
        "--ray-workers", help="Embedding actors for --engine ray (default: one per GPU, else one "
        "per 4 CPUs).", show_default=False)] = None,
    background: Annotated[bool, typer.Option(
        "--background", help="Return as soon as the tree is searchable (lexically) and embed "
        "the rest in a detached process (see `cs status`; stop it with --stop).")] = False,
    stop: Annotated[bool, typer.Option(
        "--stop", help="Stop this root's background embedding after its current batch (what "
        "it committed stays; `cs index` resumes).")] = False,
    background_child: Annotated[bool, typer.Option("--background-child", hidden=True)] = False,
) -> None:
    """Index ROOT (default: the current directory).

    Only what changed since the last run is re-chunked, and only chunks never seen before are
    embedded. The tree is searchable (by words) as soon as it is chunked; vectors fill in after,
    most recently changed files first. Ctrl-C keeps everything committed; run it again to
    resume."""
    import signal

    from codesearch.errors import UsageError
    from codesearch.index.indexer import IndexOptions, index_root
    from codesearch.render import IndexProgressBar, print_index_stats
    from codesearch.store.store import resolve_index_uri

    if engine not in ("local", "ray"):
        raise UsageError(f"unknown engine '{engine}'", hint="use one of: local, ray")
    uri = resolve_index_uri(root.expanduser(), index_dir=index_dir, index_uri=index_uri)
    if stop:
        _stop_background(uri)
        return
    if background and engine != "local":
        raise UsageError("--background works with --engine local only")
    options = IndexOptions(model=model, dim=dim, device=device, rebuild=rebuild,
                           batch_files=max(1, batch_files), cache_uri=cache_uri,
                           embed=not background,
                           lock_wait=600.0 if background_child else 2.0)
    if background_child:
        _run_background_child(root, uri, index_dir, index_uri, storage_option, options)
        return
    # SIGTERM, like Ctrl-C, ends the run after the batch in progress (phase 2).
    stopping = {"asked": False}
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.update(asked=True))
    searchable: dict[str, float | None] = {"at": None}
    try:
        with IndexProgressBar(enabled=None if not as_json else False) as bar:
            if engine == "ray":  # issue 10: embedding on a Ray cluster (codesearch/ray_engine.py)
                from codesearch.index.ray import RayOptions, index_root_ray

                stats = index_root_ray(root, index_uri=index_uri, index_dir=index_dir,
                                       storage_options=_storage_options(storage_option),
                                       options=options, progress=bar, notify=_notice,
                                       ray_options=RayOptions(address=ray_address,
                                                              workers=ray_workers))
            else:
                stats = index_root(root, index_uri=index_uri, index_dir=index_dir,
                                   storage_options=_storage_options(storage_option),
                                   options=options, progress=bar, notify=_notice,
                                   should_stop=lambda: stopping["asked"],
                                   on_searchable=lambda s: searchable.update(at=s.seconds))
                if background and stats.chunks_with_vectors < stats.chunks_total:
                    from codesearch.config import model_spec
                    from codesearch.index import background as jobs

                    args = _index_args(model_spec(stats.model) if stats.model else None, dim,
                                       device, index_dir, index_uri, storage_option, cache_uri)
                    job = jobs.start(root.expanduser().resolve(), uri, args)
                    _notice(f"embedding in the background (pid {job.pid}, log {job.log}); "
                            "`cs status` shows progress, `cs index --stop` stops it")
    except KeyboardInterrupt:
        if searchable["at"] is not None:
            _notice("Interrupted: " + _coverage_text(uri, storage_option)
                    + "; the tree is searchable, and `cs index` resumes the embedding")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_index_stats(stats, as_json=as_json, verbose=verbose)


def _index_args(model: str | None, dim: int | None, device: str | None,
                index_dir: Path | None, index_uri: str | None, storage_option: list[str] | None,
                cache_uri: str | None) -> list[str]:
    """The options a background ``cs index`` needs to write the same index the same way."""
    args = ["--json"]
    where = str(index_dir.expanduser().resolve()) if index_dir is not None else None
    for flag, value in (("--model", model), ("--dim", dim), ("--device", device),
                        ("--index-dir", where), ("--index-uri", index_uri),
                        ("--cache-uri", cache_uri)):
        if value is not None:
            args += [flag, str(value)]
    for item in storage_option or []:
        args += ["--storage-option", item]
    return args


def _run_background_child(root: Path, uri: str, index_dir: Path | None, index_uri: str | None,
                          storage_option: list[str] | None, options: Any) -> None:
    """The detached phase 2 (``cs index --background``): SIGTERM stops it after its batch."""
    import json
    import signal
    import time

    from codesearch.index import background as jobs
    from codesearch.index.indexer import index_root

    stopping = {"asked": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(asked=True))
    job = jobs.job_for(uri)
    if job is None or job.pid != os.getpid():  # started by hand: record ourselves
        jobs.record(jobs.BackgroundJob(os.getpid(), str(root.expanduser().resolve()), uri,
                                       job.log if job else "", time.time()))
    try:
        stats = index_root(root, index_uri=index_uri, index_dir=index_dir,
                           storage_options=_storage_options(storage_option), options=options,
                           notify=_notice, should_stop=lambda: stopping["asked"])
        print(json.dumps({"stopped": stopping["asked"], **stats.to_dict()}), flush=True)
    finally:
        jobs.forget(uri, os.getpid())


def _stop_background(uri: str) -> None:
    from codesearch.index import background as jobs
    job = jobs.stop(uri)
    if job is None:
        _notice("no background indexing is running for this index")
        return
    state = "stopped" if not job.running() else "is still finishing its batch"
    _notice(f"background indexing (pid {job.pid}) {state}; " + _coverage_text(uri, None)
            + "; `cs index` resumes")


def _coverage_text(uri: str, storage_option: list[str] | None) -> str:
    from codesearch.store.store import Store

    cov = Store.open(uri, storage_options=_storage_options(storage_option)).coverage()
    return f"vectors for {cov[0]:,} of {cov[1]:,} chunks"


def _search_options(k: int, lang: list[str] | None, glob: list[str] | None,
                    min_score: float | None, mode: str | None, task: str | None) -> Any:
    from codesearch.query.searcher import SearchOptions

    return SearchOptions(k=k, languages=_split_list(lang), globs=tuple(glob or ()),
                         min_score=min_score, mode=mode, task=task)


def _print_coverage(root: Path, index_dir: Path | None, index_uri: str | None,
                    storage_option: list[str] | None) -> None:
    """On stderr (so --json stays an array), while the index lacks vectors: how many it has
    (render.coverage_line). Only after an in-process search, which has lancedb loaded already:
    a server's answer should carry the coverage itself rather than make this client import it."""
    if "lancedb" not in sys.modules:
        return
    from codesearch.render import coverage_line
    from codesearch.store.store import Store, resolve_index_uri

    store = Store.open(resolve_index_uri(root, index_dir=index_dir, index_uri=index_uri),
                       storage_options=_storage_options(storage_option))
    line = coverage_line(store.coverage_info())
    if line:
        _notice(line)


def _print_served_coverage(response: dict[str, Any]) -> None:
    """The coverage line of a query server's answer (as :func:`_print_coverage` in-process)."""
    from codesearch.render import coverage_line

    coverage = response.get("coverage")
    line = coverage_line(coverage) if isinstance(coverage, dict) else None
    if line:
        _notice(line)


def _emit_hits(hits: list[Any], root: Path, as_json: bool, grep: bool) -> None:
    from codesearch.render import hits_grep, hits_json, print_hits

    if as_json:
        typer.echo(hits_json(hits))
    elif grep:
        if hits:
            typer.echo(hits_grep(hits, root))
    else:
        if hits:
            print_hits(hits, root)
        else:
            _notice("No results.")
    if not hits:
        raise typer.Exit(int(ExitCode.NO_RESULTS))


_K = Annotated[int, typer.Option("-k", "--top", help="How many results.")]
_Lang = Annotated[list[str] | None, typer.Option("--lang", help="Only these languages "
                                                 "(repeatable or comma-separated).",
                                                 show_default=False)]
_Glob = Annotated[list[str] | None, typer.Option("--glob", help="Only paths matching this glob "
                                                 "(repeatable; !GLOB excludes).",
                                                 show_default=False)]
_MinScore = Annotated[float | None, typer.Option("--min-score", help="Drop results scoring "
                                                 "below this.", show_default=False)]
_Mode = Annotated[str | None, typer.Option("--mode", help="semantic, lexical or hybrid "
                                           "(default: the best on the shared benchmark, see "
                                           "README).", show_default=False)]
_Task = Annotated[str | None, typer.Option("--task", help="nl2code or code2code (default: "
                                           "detected from the query).", show_default=False)]
_Json = Annotated[bool, typer.Option("--json", help="A JSON array of results.")]
_Grep = Annotated[bool, typer.Option("--grep", help="path:line:symbol lines, for editors.")]
_Root = Annotated[Path, typer.Option("--path", "-p", help="The indexed root.")]
_NoServer = Annotated[bool, typer.Option("--no-server", help="Work in-process: use no query "
                                         "server and start none [env CS_NO_SERVER=1].")]


def _warm_answer(op: str, path: Path, arg: str, k: int, lang: list[str] | None,
                 glob: list[str] | None, min_score: float | None, mode: str | None,
                 task: str | None, model: str | None, device: str | None,
                 index_dir: Path | None, index_uri: str | None,
                 storage_option: list[str] | None) -> Any:
    """The answer of a query server (codesearch.query.client: imports nothing heavy), starting the
    automatic one for next time when none runs; None to work in-process."""
    from codesearch.errors import UsageError
    from codesearch.query import client

    try:
        storage = _storage_options(storage_option)
    except UsageError:
        return None  # the in-process path reports it, in its order
    options = client.options_dict(k, _split_list(lang), tuple(glob or ()), min_score, mode, task)
    return client.query(op, path, arg, options, model=model, device=device, index_dir=index_dir,
                        index_uri=index_uri, storage_options=storage, notify=_notice)


@app.command("find")
def find_cmd(
    query: Annotated[str, typer.Argument(help="What the code does, or a piece of code.")],
    path: _Root = Path("."),
    k: _K = 10,
    lang: _Lang = None,
    glob: _Glob = None,
    min_score: _MinScore = None,
    mode: _Mode = None,
    task: _Task = None,
    as_json: _Json = False,
    grep: _Grep = False,
    model: _Model = None,
    device: _Device = None,
    precision: _Precision = None,
    index_dir: _IndexDir = None,
    index_uri: _IndexUri = None,
    storage_option: _StorageOpts = None,
    no_server: _NoServer = False,
) -> None:
    """Search the index of --path (default: the current directory) for QUERY.

    Exit 0 with results, 1 with none, 2 on error. A query server answers it warm: `cs serve`,
    `cs watch`, or the one the first query starts in the background (see `cs server`)."""
    from codesearch.query import client
    if query.strip() and client.servers_enabled(no_server):
        answer = _warm_answer("find", path, query, k, lang, glob, min_score, mode, task, model,
                              device, index_dir, index_uri, storage_option)
        if answer is not None:
            _print_served_coverage(answer.response)
            _emit_hits(answer.hits, answer.root, as_json, grep)
            return
    from codesearch.query.server import search_via_server_or_local

    opts = _search_options(k, lang, glob, min_score, mode, task)
    opts.validate()
    if not query.strip():
        from codesearch.errors import UsageError

        raise UsageError("empty query", hint='e.g. cs find "parse a CSV file"')
    hits, root = search_via_server_or_local(
        "find", path, query, opts, model=model, device=device, index_dir=index_dir,
        index_uri=index_uri, storage_options=_storage_options(storage_option),
        use_server=False, notify=_notice)
    _print_coverage(root, index_dir, index_uri, storage_option)
    _emit_hits(hits, root, as_json, grep)


@app.command("similar")
def similar_cmd(
    location: Annotated[str, typer.Argument(metavar="FILE:LINE",
                                            help="A line inside the code to compare with.")],
    path: _Root = Path("."),
    k: _K = 10,
    lang: _Lang = None,
    glob: _Glob = None,
    min_score: _MinScore = None,
    mode: _Mode = None,
    task: _Task = None,
    as_json: _Json = False,
    grep: _Grep = False,
    model: _Model = None,
    device: _Device = None,
    precision: _Precision = None,
    index_dir: _IndexDir = None,
    index_uri: _IndexUri = None,
    storage_option: _StorageOpts = None,
    no_server: _NoServer = False,
) -> None:
    """Find code like the chunk enclosing FILE:LINE (itself excluded)."""
    from codesearch.query import client
    if client.servers_enabled(no_server):
        where = path
        if path == Path(".") and index_uri is None:
            where = client.root_for_location(location, Path.cwd(), index_dir=index_dir)
        answer = _warm_answer("similar", where, location, k, lang, glob, min_score, mode, task,
                              model, device, index_dir, index_uri, storage_option)
        if answer is not None:
            _print_served_coverage(answer.response)
            _emit_hits(answer.hits, answer.root, as_json, grep)
            return
    from codesearch.query.searcher import root_for_location
    from codesearch.query.server import search_via_server_or_local

    opts = _search_options(k, lang, glob, min_score, mode, task)
    opts.validate()
    if path == Path(".") and index_uri is None:
        # Run outside any indexed tree: search the tree that holds FILE.
        path = root_for_location(location, Path.cwd(), index_dir=index_dir)
    hits, root = search_via_server_or_local(
        "similar", path, location, opts, model=model, device=device, index_dir=index_dir,
        index_uri=index_uri, storage_options=_storage_options(storage_option),
        use_server=False, notify=_notice)
    _print_coverage(root, index_dir, index_uri, storage_option)
    _emit_hits(hits, root, as_json, grep)


@app.command("status")
def status_cmd(
    root: Annotated[Path, typer.Argument(help="The indexed root.")] = Path("."),
    as_json: _Json = False,
    index_dir: _IndexDir = None,
    index_uri: _IndexUri = None,
    storage_option: _StorageOpts = None,
) -> None:
    """Show the index of ROOT: model, dim, files, chunks, last run, files changed since."""
    from codesearch.errors import UsageError
    from codesearch.index.indexer import index_status
    from codesearch.render import print_status
    from codesearch.store.store import Store, resolve_index_uri

    if not root.is_dir():
        raise UsageError(f"{root} is not a directory" if root.exists()
                         else f"{root} does not exist")
    uri = resolve_index_uri(root, index_dir=index_dir, index_uri=index_uri)
    store = Store.open(uri, storage_options=_storage_options(storage_option))
    if not store.exists() and not (index_uri or os.environ.get("CS_INDEX_URI")):
        from codesearch.query.searcher import find_indexed_ancestor

        found = find_indexed_ancestor(root, index_dir=index_dir)
        if found is not None:
            root, store = found
    print_status(index_status(root, store), as_json=as_json)


# --- watch ------------------------------------------------------------------------------------


class _WatchDisplay:
    """What `cs watch` shows: a live status line on a terminal (stderr) with one log line per
    batch above it; plain log lines on stderr otherwise; with --json, JSON lines on stdout
    (events "ready", "serve", "batch", "stopped")."""

    def __init__(self, root: Path, *, as_json: bool) -> None:
        self.root = root
        self.as_json = as_json
        self.live_enabled = sys.stderr.isatty() and not as_json
        self._console: Any = None
        self._live: Any = None
        self._ready = False
        self._last_batch: Any = None
        self._status: Any = None

    def __enter__(self) -> _WatchDisplay:
        from rich.console import Console

        self._console = Console(stderr=True, highlight=False)
        if self.live_enabled:
            from rich.live import Live
            from rich.text import Text

            self._live = Live(Text("starting..."), console=self._console,
                              refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _log(self, line: str) -> None:
        if self.as_json:
            return
        if self._console is not None:
            self._console.print(line, markup=False)

    def _emit(self, event: str, **data: Any) -> None:
        import json

        if self.as_json:
            typer.echo(json.dumps({"event": event, **data}))

    def _show(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(text))

    def progress(self, event: Any) -> None:
        if self._ready:
            self._show(f"indexing {event.files_done}/{event.files_total} files · "
                       f"{event.chunks_embedded} chunks embedded")
        elif event.phase == "chunk" and event.files_total:
            self._show(f"catching up: {event.files_done}/{event.files_total} files · "
                       f"{event.chunks_embedded} chunks embedded, {event.chunks_reused} reused")
        elif event.phase == "optimize":
            self._show("catching up: optimizing the index...")

    def status(self, s: Any) -> None:
        self._status = s
        if s.phase == "watching" and not self._ready and s.catch_up is not None:
            self._ready = True
            c = s.catch_up
            self._emit("ready", root=s.root, index=s.index, files=s.files, chunks=s.chunks,
                       catch_up=c.to_dict())
            self._log(f"Watching {s.root}: {s.files} files, {s.chunks} chunks "
                      f"(caught up in {c.seconds:.1f}s: {c.files_changed} changed, "
                      f"{c.files_removed} removed, {c.chunks_embedded} chunks embedded). "
                      "Ctrl-C to stop.")
        if s.last_batch is not None and s.last_batch is not self._last_batch:
            self._last_batch = b = s.last_batch
            self._emit("batch", files=s.files, chunks=s.chunks, **b.to_dict())
            self._log(self._describe(b))
        self._show(self._line(s))

    def served(self, result: Any) -> None:
        self._emit("serve", serving=result.serving, socket=result.socket, reason=result.reason)
        if result.serving:
            self._log(f"Serving find and similar at {result.socket}.")
        else:
            self._log(f"Not serving queries: {result.reason}")

    def stopped(self, s: Any) -> None:
        self._emit("stopped", files=s.files, chunks=s.chunks, batches=s.batches,
                   commits=s.commits, optimizations=s.optimizations)
        self._log(f"Stopped: {s.batches} updates, {s.commits} commits this session; "
                  f"{s.files} files, {s.chunks} chunks in the index.")

    @staticmethod
    def _describe(b: Any) -> str:
        import time as _time

        parts = []
        if b.files_changed:
            parts.append(f"{b.files_changed} updated" + (f" ({b.files_new} new)"
                                                         if b.files_new else ""))
        if b.files_removed:
            parts.append(f"{b.files_removed} removed")
        if b.files_touched:
            parts.append(f"{b.files_touched} touched")
        if b.files_failed:
            parts.append(f"{b.files_failed} skipped (unreadable)")
        line = (f"{_time.strftime('%H:%M:%S', _time.localtime(b.finished_at))}  "
                f"{', '.join(parts) or 'no change'} · {b.chunks_embedded} chunks embedded, "
                f"{b.chunks_reused} reused · {b.seconds:.2f}s")
        if not b.complete:
            line += " (stopped midway; the next run finishes it)"
        return line

    @staticmethod
    def _line(s: Any) -> str:
        import time as _time

        if s.phase in ("starting", "catch-up"):
            return "catching up..."
        last = (_time.strftime("%H:%M:%S", _time.localtime(s.last_update))
                if s.last_update else "-")
        head = {"indexing": "indexing", "optimizing": "compacting", "stopping": "stopping",
                "stopped": "stopped"}.get(s.phase, "watching")
        return (f"{head} · {s.files} files, {s.chunks} chunks · last update {last} · "
                f"queue {s.queued}")


@app.command("watch")
def watch_cmd(
    root: Annotated[Path, typer.Argument(help="The source tree to keep indexed.")] = Path("."),
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the index and build it "
                                          "again before watching.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout: ready, serve, "
                                          "batch and stopped events.")] = False,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Also answer cs find and "
                                        "cs similar over a local socket while watching.")
                     ] = True,
    debounce: Annotated[float, typer.Option("--debounce", min=0.0, help="Seconds of quiet "
                                            "before changes are indexed.")] = 0.25,
    model: _Model = None,
    dim: Annotated[int | None, typer.Option("--dim", help="Vector dimension (Matryoshka).",
                                            show_default=False)] = None,
    device: _Device = None,
    precision: _Precision = None,
    index_dir: _IndexDir = None,
    index_uri: _IndexUri = None,
    storage_option: _StorageOpts = None,
) -> None:
    """Keep the index of ROOT current while files change.

    Catches up, then re-indexes what changes (only new chunks are embedded). Holds the index's
    writer lock; stop with Ctrl-C or SIGTERM (the batch in progress is finished first)."""
    from codesearch.index.indexer import IndexOptions
    from codesearch.index.watch import WatchOptions, watch_root

    options = IndexOptions(model=model, dim=dim, device=device, rebuild=rebuild)
    with _WatchDisplay(root, as_json=as_json) as display:
        final = watch_root(root, index_uri=index_uri, index_dir=index_dir,
                           storage_options=_storage_options(storage_option), options=options,
                           watch_options=WatchOptions(debounce=debounce),
                           on_status=display.status, progress=display.progress, notify=_notice,
                           serve=serve, on_serve=display.served)
    display.stopped(final)


# --- serve, mcp -------------------------------------------------------------------------------


@app.command("serve")
def serve_cmd(
    roots: Annotated[list[Path] | None, typer.Argument(help="Indexed roots to serve (default: "
                                                       "the current directory).",
                                                       show_default=False)] = None,
    model: _Model = None,
    device: _Device = None,
    precision: _Precision = None,
    index_dir: _IndexDir = None,
    index_uri: _IndexUri = None,
    storage_option: _StorageOpts = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each request to "
                                          "stderr.")] = False,
) -> None:
    """Keep the model loaded and answer `cs find` and `cs similar` warm.

    Serves ROOTs over a private Unix socket until Ctrl-C or SIGTERM; those commands use it
    automatically."""
    from codesearch.query.server import QueryEngine, QueryServer

    engine = QueryEngine(roots or [Path(".")], index_dir=index_dir, index_uri=index_uri,
                         storage_options=_storage_options(storage_option), device=device,
                         model=model, notify=_notice)
    server = QueryServer(engine, log=_notice if verbose else None, kind="serve",
                         stoppable=True).start()
    try:
        for served, sock in zip(engine.roots.values(), server.socket_paths, strict=True):
            _notice(f"Serving {served.root} on {sock}")
        server.warm()
        _notice(f"Ready (pid {engine.info()['pid']}). Ctrl-C or SIGTERM stops.")
    except BaseException:
        server.stop()
        raise
    server.serve_forever()
    _notice("Stopped.")


server_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Show and stop the query servers "
                         "that answer cs find and cs similar warm.")
app.add_typer(server_app, name="server")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@server_app.command("status")
def server_status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of servers.")] = False,
) -> None:
    """List this user's query servers: pid, kind, idle time, roots, models, build.

    Automatic servers are started by the first `cs find` or `cs similar` of an index directory
    and exit after CS_SERVER_IDLE seconds without a request (default 900). Stale sockets left by
    a crashed server are removed."""
    import json
    import time as _time

    from codesearch.query import client
    servers = client.list_servers()
    if as_json:
        typer.echo(json.dumps([{"socket": str(s.socket), "auto": s.auto, **(s.info or {})}
                               for s in servers], indent=2))
        return
    if not servers:
        _notice(f"No query server is running (runtime directory {client.runtime_dir()}).")
        return
    now = _time.time()
    for s in servers:
        info = s.info
        if info is None:
            typer.echo(f"{s.socket}: not answering (busy, or starting)")
            continue
        current = "" if info.get("build") == client.build_id() else " (another build: unused)"
        typer.echo(f"pid {info.get('pid')}  {info.get('kind', '?')}  "
                   f"up {_age(now - float(info.get('started_at') or now))}  "
                   f"idle {_age(float(info.get('idle_s') or 0))}  "
                   f"{info.get('requests', 0)} requests  cs {info.get('build')}{current}")
        if info.get("index_set"):
            typer.echo(f"  indexes in {info['index_set']}")
        for root in info.get("roots") or []:
            typer.echo(f"  root {root}")
        models = info.get("models") or []
        typer.echo(f"  device {info.get('device') or 'auto'}; models: "
                   + (", ".join(models) or "none loaded yet"))
        typer.echo(f"  socket {s.socket}")


@server_app.command("stop")
def server_stop_cmd(
    stop_all: Annotated[bool, typer.Option("--all", help="Every server of this user, also `cs "
                                           "serve` ones (a `cs watch` is stopped where it "
                                           "runs).")] = False,
    index_dir: _IndexDir = None,
) -> None:
    """Stop the automatic query server of the index directory (--index-dir, CS_INDEX_DIR or the
    default), or with --all every server; the next query starts a fresh one when needed."""
    from codesearch import config
    from codesearch.query import client

    index_set = Path(index_dir).expanduser() if index_dir else config.index_root_dir()
    stopped = 0
    for s in client.list_servers():
        info = s.info or {}
        ours = s.auto and info.get("index_set") == str(index_set.resolve())
        if not (stop_all or ours):
            continue
        outcome = client.stop_server(s.socket)
        if outcome == "stopped":
            stopped += 1
            _notice(f"Stopped pid {info.get('pid')} ({info.get('kind', 'server')}).")
        elif outcome != "gone":
            _notice(f"pid {info.get('pid')}: {outcome}")
    if not stopped:
        _notice("No server stopped.")


@server_app.command("run", hidden=True)
def server_run_cmd(
    index_dir: Annotated[Path, typer.Option("--index-dir", help="The index directory served.")],
    roots: Annotated[list[Path] | None, typer.Option("--root", help="Roots whose model loads "
                                                     "at start.")] = None,
    device: _Device = None,
    after_pid: Annotated[int | None, typer.Option("--after-pid", help="Load models once this "
                                                  "process has exited.")] = None,
) -> None:
    """The automatic query server (started by cs find / cs similar; see `cs server status`)."""
    import time as _time

    from codesearch.query import client
    from codesearch.query.server import run_auto_server

    def log(message: str) -> None:
        print(f"{_time.strftime('%Y-%m-%d %H:%M:%S')} {message}", file=sys.stderr, flush=True)

    code = run_auto_server(index_dir, roots=roots or [], device=device, after_pid=after_pid,
                           idle_timeout=client.idle_seconds(), log=log)
    raise typer.Exit(code)


@app.command("mcp")
def mcp_cmd(
    path: _Root = Path("."),
    model: _Model = None,
    device: _Device = None,
    index_dir: _IndexDir = None,
    index_uri: _IndexUri = None,
    storage_option: _StorageOpts = None,
) -> None:
    """Run a Model Context Protocol server on stdio for AI coding tools.

    Tools: search_code, find_similar, index_status over the index of --path. See docs/mcp.md to
    register it."""
    from codesearch.mcp_server import run_stdio

    run_stdio(path, model=model, device=device, index_dir=index_dir, index_uri=index_uri,
              storage_options=_storage_options(storage_option), notify=_notice)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

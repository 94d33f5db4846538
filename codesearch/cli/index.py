"""``cs index`` and ``cs watch``: parse, run (:mod:`codesearch.index.run`,
:func:`codesearch.query.server.watch_and_serve`), render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codesearch.cli.app import app
from codesearch.cli.options import (
    Device,
    Dim,
    IndexDir,
    IndexUri,
    Model,
    Precision,
    StorageOpts,
    index_settings,
    notice,
)
from codesearch.errors import ExitCode


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
    model: Model = None,
    dim: Dim = None,
    device: Device = None,
    precision: Precision = None,
    index_dir: IndexDir = None,
    index_uri: IndexUri = None,
    storage_option: StorageOpts = None,
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
    compact: Annotated[bool, typer.Option(
        "--compact", help="Also compact the index and drop its old versions when nothing "
        "changed (every run that writes does this itself).")] = False,
    background_child: Annotated[bool, typer.Option("--background-child", hidden=True)] = False,
) -> None:
    """Index ROOT (default: the current directory).

    Only what changed since the last run is re-chunked, and only chunks never seen before are
    embedded. The tree is searchable (by words) as soon as it is chunked; vectors fill in after,
    most recently changed files first. Ctrl-C commits the batch in progress, then stops (press
    it again to stop at once); run it again to resume."""
    import json

    from codesearch.index import run
    from codesearch.index.indexer import IndexOptions
    from codesearch.render import IndexProgressBar, print_index_stats

    settings = index_settings(index_dir, index_uri, storage_option)
    run_options = run.RunOptions(engine, ray_address, ray_workers, background)
    run_options.check()
    if stop:
        notice(run.stop_background(settings.for_root(root, hint=run.DIRECTORY_HINT)))
        return
    options = IndexOptions(model=model, dim=dim, device=device, rebuild=rebuild,
                           batch_files=max(1, batch_files), cache_uri=cache_uri,
                           compact=compact)
    if background_child:
        stats = run.run_background_child(root, settings, options, notify=notice)
        print(json.dumps({"stopped": stats.stopped, **stats.to_dict()}), flush=True)
        return
    with IndexProgressBar(enabled=None if not as_json else False, notice=notice) as bar:
        stats = run.run_index(root, settings, options, run_options, progress=bar,
                              notify=bar.notice)
    print_index_stats(stats, as_json=as_json, verbose=verbose)
    if stats.stopped:  # SIGTERM: what was kept is printed; a script must not read it as done
        raise typer.Exit(int(ExitCode.TERMINATED))


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
    model: Model = None,
    dim: Dim = None,
    device: Device = None,
    precision: Precision = None,
    index_dir: IndexDir = None,
    index_uri: IndexUri = None,
    storage_option: StorageOpts = None,
) -> None:
    """Keep the index of ROOT current while files change.

    Catches up, then re-indexes what changes (only new chunks are embedded). Holds the index's
    writer lock; stop with Ctrl-C or SIGTERM (the batch in progress is finished first)."""
    from codesearch.index.indexer import IndexOptions
    from codesearch.index.watch import WatchOptions, watch_root
    from codesearch.query.server import watch_and_serve
    from codesearch.render import WatchDisplay

    settings = index_settings(index_dir, index_uri, storage_option)
    options = IndexOptions(model=model, dim=dim, device=device, rebuild=rebuild)
    watch_options = WatchOptions(debounce=debounce)
    with WatchDisplay(as_json=as_json) as display:
        if serve:
            final = watch_and_serve(root, settings, options=options, watch_options=watch_options,
                                    on_status=display.status, progress=display.progress,
                                    notify=notice, on_serve=display.served)
        else:
            final = watch_root(root, settings, options=options, watch_options=watch_options,
                               on_status=display.status, progress=display.progress,
                               notify=notice)
    display.stopped(final)

"""``cs serve``, ``cs server status|stop|run`` and ``cs mcp``: the long-lived processes that
answer queries warm."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codesearch.cli.app import app, sub_app
from codesearch.cli.options import (
    Device,
    IndexDir,
    IndexUri,
    Model,
    Precision,
    RootPath,
    StorageOpts,
    index_settings,
    notice,
)

server_app = sub_app("Show and stop the query servers that answer cs find and cs similar warm.")
app.add_typer(server_app, name="server")


@app.command("serve")
def serve_cmd(
    roots: Annotated[list[Path] | None, typer.Argument(help="Indexed roots to serve (default: "
                                                       "the current directory).",
                                                       show_default=False)] = None,
    model: Model = None,
    device: Device = None,
    precision: Precision = None,
    index_dir: IndexDir = None,
    index_uri: IndexUri = None,
    storage_option: StorageOpts = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each request to "
                                          "stderr.")] = False,
) -> None:
    """Keep the model loaded and answer `cs find` and `cs similar` warm.

    Serves ROOTs over a private Unix socket until Ctrl-C or SIGTERM; those commands use it
    automatically."""
    from codesearch.embed.pool import EmbedderPool
    from codesearch.query.server import QueryServer
    from codesearch.query.service import QueryService, serve_roots

    locations = serve_roots(roots or [Path(".")],
                            index_settings(index_dir, index_uri, storage_option))
    service = QueryService(locations, device=device, model=model, notify=notice,
                           pool=EmbedderPool(notify=notice, queries_only=True))
    server = QueryServer(service, log=notice if verbose else None, kind="serve",
                         stoppable=True).start()
    try:
        for location, sock in zip(locations, server.socket_paths, strict=True):
            notice(f"Serving {location.root} on {sock}")
        server.warm()
        notice(f"Ready (pid {service.info()['pid']}). Ctrl-C or SIGTERM stops.")
    except BaseException:
        server.stop()
        raise
    server.serve_forever()
    notice("Stopped.")


@server_app.command("status")
def server_status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of servers.")] = False,
) -> None:
    """List this user's query servers: pid, kind, idle time, roots, models, build.

    Automatic servers are started by the first `cs find` or `cs similar` of an index directory
    and exit after CS_SERVER_IDLE seconds without a request (default 900). Stale sockets left by
    a crashed server are removed."""
    import json

    from codesearch.query import client, protocol
    from codesearch.render import print_servers

    servers = client.list_servers()
    if as_json:
        typer.echo(json.dumps([{"socket": str(s.socket), "auto": s.auto, **(s.info or {})}
                               for s in servers], indent=2))
        return
    if not servers:
        notice(f"No query server is running (runtime directory {protocol.runtime_dir()}).")
        return
    print_servers(servers, current_build=protocol.build_id())


@server_app.command("stop")
def server_stop_cmd(
    stop_all: Annotated[bool, typer.Option("--all", help="Every server of this user, also `cs "
                                           "serve` ones (a `cs watch` is stopped where it "
                                           "runs).")] = False,
    index_dir: IndexDir = None,
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
            notice(f"Stopped pid {info.get('pid')} ({info.get('kind', 'server')}).")
        elif outcome != "gone":
            notice(f"pid {info.get('pid')}: {outcome}")
    if not stopped:
        notice("No server stopped.")


@server_app.command("run", hidden=True)
def server_run_cmd(
    index_dir: Annotated[Path, typer.Option("--index-dir", help="The index directory served.")],
    roots: Annotated[list[Path] | None, typer.Option("--root", help="Roots whose model loads "
                                                     "at start.")] = None,
    device: Device = None,
    after_pid: Annotated[int | None, typer.Option("--after-pid", help="Load models once this "
                                                  "process has exited.")] = None,
) -> None:
    """The automatic query server (started by cs find / cs similar; see `cs server status`)."""
    import sys
    import time

    from codesearch.query import protocol
    from codesearch.query.server import run_auto_server

    def log(message: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", file=sys.stderr, flush=True)

    code = run_auto_server(index_dir, roots=roots or [], device=device, after_pid=after_pid,
                           idle_timeout=protocol.idle_seconds(), log=log)
    raise typer.Exit(code)


@app.command("mcp")
def mcp_cmd(
    path: RootPath = Path("."),
    model: Model = None,
    device: Device = None,
    index_dir: IndexDir = None,
    index_uri: IndexUri = None,
    storage_option: StorageOpts = None,
) -> None:
    """Run a Model Context Protocol server on stdio for AI coding tools.

    Tools: search_code, find_similar, index_status over the index of --path. See docs/mcp.md to
    register it."""
    from codesearch.mcp_server import run_stdio

    run_stdio(path, index_settings(index_dir, index_uri, storage_option), model=model,
              device=device, notify=notice)


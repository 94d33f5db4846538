"""`cs mcp` end to end: the official SDK's stdio client spawns `cs mcp --path <repo> --model <tiny>`
on an indexed copy of a fixture repository, lists the tools and calls each one; answers must be
what `cs find --json`, `cs similar --json` and `cs status --json` print for the same index."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import cs

pytest.importorskip("mcp")

pytestmark = pytest.mark.usefixtures("cpu_dtype_memo")
REPO_ROOT = Path(__file__).resolve().parent.parent


def cs_json(*args: str) -> Any:
    result = cs(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def _session_calls(repo: Path, model: Path) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {k: v for k, v in os.environ.items()
           if k.startswith(("CS_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")) or k == "NO_COLOR"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "codesearch", "mcp", "--path", str(repo), "--model", str(model)],
        env=env, cwd=str(REPO_ROOT))  # not the repo: --path must be what counts
    out: dict[str, Any] = {}
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                out["tools"] = {t.name: t for t in (await session.list_tools()).tools}
                out["search"] = await session.call_tool(
                    "search_code", {"query": "push a value onto a stack", "k": 4})
                out["search_filtered"] = await session.call_tool(
                    "search_code", {"query": "parse a CSV file", "k": 3, "language": "python",
                                    "path_glob": "py/datatools/*.py"})
                out["similar"] = await session.call_tool(
                    "find_similar", {"file": "py/datatools/stats.py", "line": 5, "k": 3})
                out["similar_go"] = await session.call_tool(
                    "find_similar", {"file": "py/datatools/stats.py", "line": 5, "k": 2,
                                     "language": "go"})
                out["dups"] = await session.call_tool(
                    "find_duplicates", {"k": 5, "threshold": 0.5, "min_lines": 3})
                out["docs_only"] = await session.call_tool(
                    "search_code", {"query": "how do I compute a mean?", "k": 3, "kind": "doc"})
                out["docs"] = await session.call_tool(
                    "find_docs", {"file": "py/datatools/stats.py", "line": 14, "k": 2})
                out["status"] = await session.call_tool("index_status", {})
                out["bad_language"] = await session.call_tool(
                    "search_code", {"query": "x", "language": "cobol"})
                out["bad_line"] = await session.call_tool(
                    "find_similar", {"file": "py/datatools/stats.py", "line": 9999})
    return out


def _structured(result: Any) -> Any:
    assert not result.is_error, result.content
    data = result.structured_content
    # The text block carries the same JSON for clients that ignore structured content.
    assert json.loads(result.content[0].text) == data
    return data


@pytest.mark.slow
def test_mcp_tools_end_to_end(indexed_py_go_repo: Path, tiny_model_dir: Path) -> None:
    import anyio

    out = anyio.run(_session_calls, indexed_py_go_repo, tiny_model_dir)

    tools = out["tools"]
    assert set(tools) == {"search_code", "find_similar", "find_docs", "find_duplicates",
                          "index_status"}
    search_args = tools["search_code"].input_schema["properties"]
    assert set(search_args) == {"query", "k", "language", "path_glob", "kind"}
    assert tools["search_code"].input_schema["required"] == ["query"]
    assert set(tools["find_similar"].input_schema["required"]) == {"file", "line"}
    assert all(t.description for t in tools.values())
    assert tools["search_code"].output_schema is not None

    search = _structured(out["search"])
    assert search["root"] == str(indexed_py_go_repo.resolve())
    assert search["hits"] == cs_json("find", "push a value onto a stack", "-k", "4",
                                     "--path", str(indexed_py_go_repo), "--json")
    assert len(search["hits"]) == 4

    filtered = _structured(out["search_filtered"])["hits"]
    assert filtered == cs_json("find", "parse a CSV file", "-k", "3", "--lang", "python",
                               "--glob", "py/datatools/*.py", "--path", str(indexed_py_go_repo),
                               "--json")
    assert filtered and all(h["path"].startswith("py/datatools/") for h in filtered)

    similar = _structured(out["similar"])["hits"]
    assert similar == cs_json("similar", str(indexed_py_go_repo / "py/datatools/stats.py") + ":5",
                              "-k", "3", "--path", str(indexed_py_go_repo), "--json")
    assert len(similar) == 3

    similar_go = _structured(out["similar_go"])["hits"]
    assert similar_go == cs_json("similar", str(indexed_py_go_repo / "py/datatools/stats.py")
                                 + ":5", "-k", "2", "--lang", "go", "--path",
                                 str(indexed_py_go_repo), "--json")
    assert similar_go and all(h["language"] == "go" for h in similar_go)

    dups = _structured(out["dups"])
    assert dups["root"] == str(indexed_py_go_repo.resolve())
    assert dups["groups"] == cs_json("dups", str(indexed_py_go_repo), "-k", "5",
                                     "--threshold", "0.5", "--min-lines", "3", "--json")
    assert dups["groups"]
    docs_only = _structured(out["docs_only"])["hits"]
    assert docs_only == cs_json("find", "how do I compute a mean?", "-k", "3", "--docs",
                                "--path", str(indexed_py_go_repo), "--json")
    assert docs_only and {h["kind"] for h in docs_only} == {"doc"}
    docs = _structured(out["docs"])["hits"]
    assert docs == cs_json("docs", str(indexed_py_go_repo / "py/datatools/stats.py") + ":14",
                           "-k", "2", "--path", str(indexed_py_go_repo), "--json")
    assert docs and {h["kind"] for h in docs} == {"doc"}

    status = _structured(out["status"])
    expected = cs_json("status", str(indexed_py_go_repo), "--json")
    assert status == expected
    assert status["files"] > 0 and status["chunks"] > 0
    assert status["model"] == str(tiny_model_dir)

    for key, message in (("bad_language", "no indexed files in language 'cobol'"),
                         ("bad_line", "out of range")):
        result = out[key]
        assert result.is_error
        assert message in result.content[0].text

"""`gateway apply` and `gateway export` against a remote gateway (GATEWAY_URL, GATEWAY_API_KEY).

No Django here: the CLI parses and reports locally and talks to the Apply and export APIs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from gateway_project.manifest_io import (
    ManifestError,
    dump_stream,
    export_files,
    format_results,
    load_documents,
)

TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def str_problems(exc: ManifestError) -> str:
    return "\n".join(str(p) for p in exc.problems)


class RemoteError(Exception):
    """The remote gateway refused or could not be reached; the message is for the user."""


def _client() -> httpx.Client:
    url = os.environ.get("GATEWAY_URL", "").rstrip("/")
    key = os.environ.get("GATEWAY_API_KEY", "")
    if not url or not key:
        raise RemoteError("set GATEWAY_URL and GATEWAY_API_KEY (a PAT or virtual account token)")
    return httpx.Client(
        base_url=f"{url}/api/v1/",
        headers={"Authorization": f"Bearer {key}"},
        timeout=TIMEOUT,
        follow_redirects=False,
    )


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
    problems = error.get("problems")
    if problems:
        return "\n".join(
            f"{p['document']}: {p['path']}: {p['message']}"
            if p["path"]
            else f"{p['document']}: {p['message']}"
            for p in problems
        )
    fields = error.get("fields") or {}
    details = "".join(f"\n  {k}: {'; '.join(v)}" for k, v in fields.items() if k)
    return f"{error.get('message', 'error')} (HTTP {response.status_code}){details}"


def _request(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        with _client() as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach the gateway: {exc.__class__.__name__}") from exc
    if response.status_code >= 400:
        raise RemoteError(_error_text(response))
    body: dict[str, Any] = response.json()
    return body


def apply_command(args: argparse.Namespace) -> int:
    """Send local manifests to the Apply API; print the per-object results."""
    try:
        docs = load_documents(args.files, args.dirs)
        body = _request(
            "PUT",
            "apply",
            json={
                "manifest": [d.data for d in docs],
                "sources": [{"file": d.source, "index": d.index} for d in docs],
                "dry_run": args.dry_run,
                "show_diff": args.show_diff,
                "sync": args.sync,
                "sync_console_objects": args.sync_console_objects,
            },
        )
    except (ManifestError, RemoteError, OSError) as exc:
        _err(str(exc) if not isinstance(exc, ManifestError) else str_problems(exc))
        return 1
    _out(format_results(body["results"], show_diff=args.show_diff, dry_run=args.dry_run))
    return 0


def export_command(args: argparse.Namespace) -> int:
    """Fetch every object as manifests; write them to --dir or print a YAML stream."""
    try:
        body = _request("GET", "export", params=[("type", t) for t in args.types])
    except RemoteError as exc:
        _err(str(exc))
        return 1
    items = body["items"]
    if args.dir:
        written = export_files(
            [(i["directory"], i["name"], i["manifest"]) for i in items], Path(args.dir)
        )
        _out(f"wrote {len(written)} file(s) to {args.dir}")
    else:
        sys.stdout.write(dump_stream([i["manifest"] for i in items]))
    return 0


def add_subcommands(commands: Any) -> None:
    """Register `apply` and `export` on the `gateway` parser's subparsers."""
    apply = commands.add_parser(
        "apply",
        help="apply YAML manifests to the gateway at GATEWAY_URL",
        description="Apply manifests atomically through the Apply API, with the permissions of "
        "GATEWAY_API_KEY.",
    )
    apply.add_argument(
        "-f",
        "--file",
        action="append",
        default=[],
        dest="files",
        help="a manifest file, or - for standard input (repeatable)",
    )
    apply.add_argument(
        "--dir",
        action="append",
        default=[],
        dest="dirs",
        help="a folder of manifests, read recursively (repeatable)",
    )
    apply.add_argument("--dry-run", action="store_true", help="validate and show, change nothing")
    apply.add_argument("--show-diff", action="store_true", help="a unified diff per object")
    apply.add_argument(
        "--sync",
        action="store_true",
        help="delete apply-created objects of the applied types absent from the set",
    )
    apply.add_argument(
        "--sync-console-objects",
        action="store_true",
        help="with --sync, also delete objects made in the console or API",
    )
    apply.set_defaults(handler=_apply_checked)
    export = commands.add_parser("export", help="export objects as manifests")
    export.add_argument("--type", action="append", default=[], dest="types")
    export.add_argument("--dir", default="")
    export.set_defaults(handler=export_command)


def _apply_checked(args: argparse.Namespace) -> int:
    if not args.files and not args.dirs:
        _err("give -f FILE (or -) and/or --dir DIR")
        return 2
    return apply_command(args)

"""``python -m oil_analysis.api serve | keys add|list|revoke``."""

from __future__ import annotations

import argparse
import sys

from ..domain.clients import load_clients
from ..settings import get_settings
from . import keys as keystore

HOST_VAR = "OIL_API_HOST"
PORT_VAR = "OIL_API_PORT"


def _serve(args) -> int:
    import uvicorn

    from .app import create_app
    from .logs import log_config

    s = get_settings()
    host = args.host or s.api_host
    port = int(args.port or s.api_port)
    app = create_app()
    # uvloop and httptools (pinned dependencies): the fast event loop and HTTP parser.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=log_config(),
        access_log=True,
        server_header=False,
        loop="uvloop",
        http="httptools",
    )
    return 0


def _keys(args) -> int:
    path = keystore.keys_file()
    if args.verb == "add":
        registered = load_clients(get_settings().clients_file)
        if args.all:
            clients = [keystore.ALL]
        else:
            unknown = sorted(set(args.client or []) - set(registered))
            if unknown:
                print(f"unknown client(s) {unknown}; registered: {sorted(registered)}", file=sys.stderr)
                return 2
            clients = args.client or []
        if not clients:
            print("give --client KEY (repeatable) or --all", file=sys.stderr)
            return 2
        key, record = keystore.add_key(path, clients, args.name or "")
        print(f"added key {record.id} for {', '.join(record.clients)} to {path}")
        print("the key is shown only now; store it in your secret manager:")
        print(key)
        return 0
    if args.verb == "list":
        rows = keystore.list_keys(path)
        print(f"{len(rows)} key(s) in {path}")
        for k in rows:
            print(f"{k.id}\t{','.join(k.clients)}\t{k.created_at}\t{k.name}\tsha256:{k.sha256[:12]}…")
        return 0
    try:
        record = keystore.revoke_key(path, args.id)
    except KeyError:
        print(f"no key with id {args.id!r} in {path}", file=sys.stderr)
        return 1
    print(f"revoked {record.id} ({', '.join(record.clients)}) in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oil_analysis.api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the API with uvicorn")
    serve.add_argument("--host", help=f"bind address (default ${HOST_VAR} or 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port (default ${PORT_VAR} or 8000)")
    keys = sub.add_parser("keys", help=f"manage API keys (file: ${keystore.KEYS_FILE_VAR})")
    verbs = keys.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="create a key; prints it once, as the last line")
    scope = add.add_mutually_exclusive_group()
    scope.add_argument("--client", action="append", help="a client the key may read (repeatable)")
    scope.add_argument("--all", action="store_true", help="every registered client, present and future")
    add.add_argument("--name", help="a label (who holds the key)")
    verbs.add_parser("list", help="list keys (id, clients, creation time, label)")
    revoke = verbs.add_parser("revoke", help="delete a key by id")
    revoke.add_argument("id")
    args = parser.parse_args(argv)
    return _serve(args) if args.command == "serve" else _keys(args)


if __name__ == "__main__":
    sys.exit(main())

"""``respd serve`` — settings in, server process out."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from respd.config import ConfigError, load_settings
from respd.telemetry import logs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="respd", description="A server for the OpenAI Responses API.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="address to bind (env RESPD_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (env RESPD_PORT, default 8080)")
    serve.add_argument("--config", help="TOML config file (env RESPD_CONFIG)")
    serve.add_argument("--database", help="database URL (env RESPD_DATABASE_URL; default SQLite in the data dir)")
    migrate = sub.add_parser("migrate", help="create or upgrade the database schema, then exit")
    migrate.add_argument("--config")
    migrate.add_argument("--database")
    hooks = sub.add_parser("webhooks", help="inspect webhook deliveries and their attempts (JSON lines)")
    hooks.add_argument("--config")
    hooks.add_argument("--database")
    hooks_sub = hooks.add_subparsers(dest="action", required=True)
    listing = hooks_sub.add_parser("list", help="the newest deliveries")
    listing.add_argument("--state", choices=["pending", "delivered", "failed"])
    listing.add_argument("--response", help="only the deliveries of this response id")
    listing.add_argument("--limit", type=int, default=50)
    hooks_sub.add_parser("show", help="one delivery with every attempt").add_argument("id")
    hooks_sub.add_parser("retry", help="make a delivery (given up or waiting) due now").add_argument("id")
    return p


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from respd.api.app import create_app

    settings = load_settings(args.config, host=args.host, port=args.port, database_url=args.database)
    logs.configure(settings.log_level, settings.ops.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None if settings.ops.log_format == "json" else uvicorn.config.LOGGING_CONFIG,  # JSON: ours
        access_log=False,  # respd writes its own (respd.access)
        proxy_headers=False,  # respd does not use the client address; skip the per-request middleware
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=max(1, round(settings.drain_s)),  # SIGTERM: open streams get this long to finish
    )


def _migrate(args: argparse.Namespace) -> None:
    from respd.store.store import Store

    settings = load_settings(args.config, database_url=args.database)

    async def run() -> None:
        store = Store(settings.database_url)
        await store.open()
        await store.close()

    asyncio.run(run())
    print(f"schema is current at {settings.database_url}")


def _webhooks(args: argparse.Namespace) -> int:
    from respd.store.store import Store
    from respd.store.webhooks import WebhookStore

    settings = load_settings(args.config, database_url=args.database)

    async def run() -> int:
        store = Store(settings.database_url)
        await store.open()
        try:
            deliveries = WebhookStore(store, "cli")
            if args.action == "list":
                for row in await deliveries.list(args.state, args.response, args.limit):
                    print(orjson.dumps(row).decode())
                return 0
            if args.action == "show":
                found = await deliveries.get(args.id)
                print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() if found else f"no delivery {args.id}")
                return 0 if found else 1
            retried = await deliveries.retry(args.id)
            print(f"{args.id} is due now" if retried else f"no undelivered delivery {args.id}")
            return 0 if retried else 1
        finally:
            await store.close()

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            _serve(args)
        elif args.command == "webhooks":
            raise SystemExit(_webhooks(args))
        else:
            _migrate(args)
    except ConfigError as exc:
        print(f"respd: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

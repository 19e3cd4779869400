"""``respd serve`` — settings in, server process out."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from respd.config import ConfigError, load_settings


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
    return p


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from respd.api.app import create_app
    from respd.api.protocol import EnvelopeHttpToolsProtocol

    settings = load_settings(args.config, host=args.host, port=args.port, database_url=args.database)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,  # respd does not use the client address; skip the per-request middleware
        loop="uvloop",
        http=EnvelopeHttpToolsProtocol,  # httptools, answering an unparseable request with the error envelope
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


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            _serve(args)
        else:
            _migrate(args)
    except ConfigError as exc:
        print(f"respd: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

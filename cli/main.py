"""`taskmanager`: serve the API, run the worker, run migrations."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from shared.settings import ConfigError, get_settings

app = typer.Typer(help="TaskManager: hands out reading tasks, tracks them, calls back.")
db_app = typer.Typer(help="Database schema migrations.")
app.add_typer(db_app, name="db")


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [TASKMAN_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [TASKMAN_PORT]")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    migrate: Annotated[bool, typer.Option(help="Run migrations first")] = False,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    settings = get_settings()
    _logging(settings.log_level)
    try:
        settings.resolved_secret_key()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if migrate:
        from cli.migrate import upgrade

        upgrade(settings.async_database_url)
    uvicorn.run(
        "cli.serve:app_factory",
        factory=True,
        host=host or settings.bind_host,
        port=port or settings.port,
        workers=workers,
        proxy_headers=True,
        forwarded_allow_ips="*",
        log_level=settings.log_level.lower(),
    )


@app.command()
def worker() -> None:
    """Run the event worker: outbox relay, callback and webhook delivery, lease sweeper."""
    import asyncio

    from worker.service import run_worker

    settings = get_settings()
    _logging(settings.log_level)
    try:
        # uvloop, as uvicorn uses for `serve`: the event loop's own work (sockets, timers,
        # callbacks) costs a fraction of asyncio's, and the worker is mostly event loop.
        import uvloop
    except ImportError:  # not built for this platform
        raise typer.Exit(asyncio.run(run_worker(settings))) from None
    raise typer.Exit(uvloop.run(run_worker(settings)))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the configured database up to `revision` (default: the newest)."""
    from cli.migrate import upgrade

    settings = get_settings()
    _logging(settings.log_level)
    upgrade(settings.async_database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()] = "base") -> None:
    """Migrate the configured database down to `revision` (default: empty)."""
    from cli.migrate import downgrade

    settings = get_settings()
    _logging(settings.log_level)
    downgrade(settings.async_database_url, revision)
    typer.echo(f"database at {revision}")


def main() -> None:
    app()

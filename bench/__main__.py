"""`python -m bench` (`make bench`): claim throughput, printed as figures and ratios.

1. PostgreSQL, our `POST /api/v1/tasks/claim` served by `taskmanager serve`: Bearer at 8 and
   64 connections, Basic at 8.
2. The same claim as one SQL statement in a tight asyncpg loop (1 and 8 connections).
3. The bare reference endpoint (bench/bare.py) at 8 and 64 connections.
   During 2 and 3 the bench vacuums the task table as `taskmanager serve` does during 1
   (bench/seed.py, `maintained`), so the references do not slow down for want of it.
4. Our endpoint on MariaDB and SQLite at 8 connections, for a third of the duration.
5. A summary table with the issue's targets. Nothing is asserted: the figures are for reading.

Environment (or the matching option): BENCH_SECONDS (60), BENCH_WORKERS (1), BENCH_LOADGEN
(auto | wrk | python), BENCH_BACKENDS (postgresql,mariadb,sqlite), BENCH_PG_QUEUE (300000),
BENCH_PG_URL and BENCH_MARIADB_URL (admin connections used to create the databases).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import seed, server
from bench.claim import claim_loop
from bench.cpu import core_speed_ms, cores
from bench.load import LoadTool, Watched, find_load_tool, run_load
from bench.report import Results, caveats, http_line, loop_line, say, summary_table
from shared.vacuum import TaskVacuum

BACKENDS = ("postgresql", "mariadb", "sqlite")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
# Claims per second no run here comes near; the queue is topped up to this rate times the
# duration before every measurement, so it cannot run dry (a 204 count would show it did).
PG_RATE_CEILING = 12_000
OTHER_RATE_CEILING = 5_000
OTHER_QUEUE_MINIMUM = 50_000


@dataclass(frozen=True)
class Config:
    seconds: float
    workers: int
    loadgen: str
    backends: tuple[str, ...]
    pg_queue: int

    @property
    def short_seconds(self) -> float:
        return float(max(1, round(self.seconds / 3)))

    def warmup_seconds(self, seconds: float) -> float:
        return min(5.0, max(1.0, seconds / 10))


def parse_config(argv: list[str]) -> Config:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=float(env("BENCH_SECONDS", "60")))
    parser.add_argument("--workers", type=int, default=int(env("BENCH_WORKERS", "1")))
    parser.add_argument(
        "--loadgen", choices=("auto", "wrk", "python"), default=env("BENCH_LOADGEN", "auto")
    )
    parser.add_argument("--backends", default=env("BENCH_BACKENDS", ",".join(BACKENDS)))
    parser.add_argument("--pg-queue", type=int, default=int(env("BENCH_PG_QUEUE", "300000")))
    args = parser.parse_args(argv)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = set(backends) - set(BACKENDS)
    if unknown or args.seconds <= 0 or args.workers < 1:
        parser.error(f"need seconds > 0, workers >= 1, backends among {', '.join(BACKENDS)}")
    return Config(args.seconds, args.workers, args.loadgen, backends, args.pg_queue)


@dataclass
class Bench:
    config: Config
    tool: LoadTool
    results: Results
    tmp: Path

    @property
    def serve_command(self) -> str:
        return f"taskmanager serve --workers {self.config.workers}"

    def queue_minimum(self, backend: str, seconds: float) -> int:
        if backend == "postgresql":
            return max(self.config.pg_queue, math.ceil(PG_RATE_CEILING * seconds))
        return max(OTHER_QUEUE_MINIMUM, math.ceil(OTHER_RATE_CEILING * seconds))

    async def top_up(self, db: seed.BenchDatabase, reader: server.Reader, seconds: float) -> None:
        before, added, took = await seed.ensure_queued(
            db, self.queue_minimum(db.backend, seconds), reader.template_id, reader.group_id
        )
        if added:
            say(f"  queue: {before:,} queued, seeded {added:,} more in {took:.1f} s")

    async def measure(
        self,
        key: str,
        label: str,
        target: server.Server,
        db: seed.BenchDatabase,
        authorization: str | None,
        connections: int,
        seconds: float,
    ) -> None:
        """A warm-up run (not counted; it also opens the server's pooled connections), then
        the measured run."""
        for run_seconds in (self.config.warmup_seconds(seconds), seconds):
            watched = Watched(target.pids(), partial(seed.database_processes, db))
            result = await run_load(
                self.tool,
                target.claim_url,
                authorization=authorization,
                connections=connections,
                seconds=run_seconds,
                watched=watched,
            )
        self.results.http[key] = result
        say(http_line(label, result, self.core_speed()))

    def core_speed(self) -> float:
        speed = core_speed_ms()
        self.results.core_speeds.append(speed)
        return speed

    def workers_for(self, backend: str) -> int:
        # SQLite has one writer: the embedded start (`make run`) is one process, and a second
        # one would only wait in SQLite's busy handler.
        return 1 if backend == "sqlite" else self.config.workers

    async def ours(
        self, db: seed.BenchDatabase, prefix: str, runs: list[tuple[str, int]], seconds: float
    ) -> server.Reader:
        credentials = server.new_credentials()
        workers = self.workers_for(db.backend)
        # PostgreSQL and MariaDB run as deployed, with a broker: `serve` only writes events
        # and a worker elsewhere relays them. SQLite is the embedded start: it relays itself.
        amqp = None if db.backend == "sqlite" else AMQP_URL
        async with server.taskmanager(db.url, workers, self.tmp, credentials, amqp) as tm:
            reader = await server.create_reader(tm, credentials)
            for auth, connections in runs:
                await self.top_up(db, reader, seconds)
                if auth == "bearer":
                    header = await server.bearer_header(tm, reader)
                else:
                    header = server.basic_header(reader)
                label = f"{prefix} ours {auth.capitalize()}, {connections} clients"
                key = f"{prefix.lower()}.{auth}.{connections}"
                await self.measure(key, label, tm, db, header, connections, seconds)
        return reader

    async def postgresql(self) -> None:
        seconds = self.config.seconds
        db = seed.database_for("postgresql", f"tm_bench_{os.getpid()}", self.tmp)
        try:
            await seed.create(db)
            say(f"PostgreSQL: database {db.name}, {self.serve_command}")
            reader = await self.ours(
                db, "PG", [("bearer", 8), ("bearer", 64), ("basic", 8)], seconds
            )
            say(
                "PostgreSQL: the references, with the task table vacuumed as our service "
                "vacuums it (shared/vacuum.py)"
            )
            say("PostgreSQL: the claim SQL in a tight asyncpg loop (no HTTP)")
            for connections in (1, 8):
                await self.top_up(db, reader, seconds)
                async with seed.maintained(db) as vacuum:
                    loop = await claim_loop(db.asyncpg_dsn, reader.user_id, connections, seconds)
                self.results.loops[connections] = loop
                plural = "s" if connections > 1 else ""
                label = f"SQL loop, {connections} connection{plural}"
                say(f"{loop_line(label, loop, self.core_speed())}; {_vacuums(vacuum)}")
            say(f"PostgreSQL: bench/bare.py under uvicorn --workers {self.config.workers}")
            async with server.bare(
                db.asyncpg_dsn, reader.user_id, self.config.workers, self.tmp
            ) as reference:
                for connections in (8, 64):
                    await self.top_up(db, reader, seconds)
                    label = f"bare, {connections} clients"
                    async with seed.maintained(db) as vacuum:
                        await self.measure(
                            f"bare.{connections}", label, reference, db, None, connections, seconds
                        )
                    say(f"  {'':<30} {_vacuums(vacuum)}")
        finally:
            await seed.drop(db)

    async def other(self, backend: str) -> None:
        prefix = {"mariadb": "MariaDB", "sqlite": "SQLite"}[backend]
        db = seed.database_for(backend, f"tm_bench_{os.getpid()}", self.tmp)
        try:
            await seed.create(db)
            workers = self.workers_for(backend)
            say(f"{prefix}: database {db.name}, taskmanager serve --workers {workers}")
            await self.ours(db, prefix, [("bearer", 8)], self.config.short_seconds)
        finally:
            await seed.drop(db)

    async def run(self) -> None:
        for backend in self.config.backends:
            try:
                if backend == "postgresql":
                    await self.postgresql()
                else:
                    await self.other(backend)
            except Exception as exc:
                self.results.failures.append(f"{backend}: {exc}")
                say(f"{backend}: FAILED: {exc}")
                traceback.print_exc()


def _vacuums(vacuum: TaskVacuum) -> str:
    done = vacuum.vacuums
    return f"task table vacuumed {done} time{'' if done == 1 else 's'} during the run"


async def main_async(config: Config) -> int:
    tool = find_load_tool(config.loadgen)
    say(
        f"claim benchmark: {config.seconds:g} s per run ({config.short_seconds:g} s on MariaDB "
        f"and SQLite), {cores()} cores, server workers {config.workers}, "
        f"load generator {tool.describe()}; core speed {core_speed_ms():.0f} ms for a fixed "
        "Python loop (lower is faster)"
    )
    results = Results()
    with tempfile.TemporaryDirectory(prefix="tm-bench-") as tmp:
        await Bench(config, tool, results, Path(tmp)).run()
    say("\nSummary (targets are for reading; nothing here fails the run)")
    say(summary_table(results))
    for note in caveats(results):
        say(note)
    for failure in results.failures:
        say(f"failed: {failure}")
    return 1 if results.failures else 0


def main(argv: list[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv)
    return asyncio.run(main_async(config))


if __name__ == "__main__":
    sys.exit(main())

"""Figures as printed lines, and the summary table with the issue's targets.

Targets are printed next to the figures for a reader to judge; nothing here fails a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.claim import LoopResult
from bench.load import LoadResult


@dataclass
class Results:
    """Everything one run measured, keyed by a short name such as "pg.bearer.8"."""

    http: dict[str, LoadResult] = field(default_factory=dict)
    loops: dict[int, LoopResult] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # bench/cpu.py core_speed_ms() right after each measured run: this machine's speed
    # changes from minute to minute, and every rate scales with it.
    core_speeds: list[float] = field(default_factory=list)


def say(message: str) -> None:
    print(message, flush=True)


def percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def _cpu(parts: list[tuple[str, float]], machine: float) -> str:
    known = sum(share for _, share in parts)
    shown = [f"{name} {percent(share)}" for name, share in parts]
    shown.append(f"other processes {percent(max(0.0, machine - known))}")
    return f"CPU (% of all cores): {', '.join(shown)}, machine busy {percent(machine)}"


def speed_note(core_speed: float | None, after: str = "run") -> str:
    return "" if core_speed is None else f"; core speed after the {after} {core_speed:.0f} ms"


def http_line(label: str, r: LoadResult, core_speed: float | None = None) -> str:
    cpu = [("load generator", r.loadgen_cpu), ("server", r.server_cpu)]
    if r.database_cpu:
        cpu.append(("database", r.database_cpu))
    return (
        f"  {label:<30} {r.claims_per_second:>8,.0f} claims/s  "
        f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
        f"non-2xx {r.non_2xx}  204 {r.empty}  socket errors {r.errors}\n"
        f"  {'':<30} {_cpu(cpu, r.machine_cpu)}; "
        f"server CPU per claim {r.server_ms_per_claim:.2f} ms{speed_note(core_speed)}"
    )


def loop_line(label: str, r: LoopResult, core_speed: float | None = None) -> str:
    cpu = [("client", r.client_cpu), ("database", r.database_cpu)]
    return (
        f"  {label:<30} {r.claims_per_second:>8,.0f} claims/s  "
        f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  empty {r.empty}\n"
        f"  {'':<30} {_cpu(cpu, r.machine_cpu)}{speed_note(core_speed)}"
    )


@dataclass(frozen=True)
class Row:
    figure: str
    value: float | None
    unit: str  # "/s", "ms", "x" (a ratio), "%" or "n" (a count)
    target: str = "-"
    met: Callable[[float], bool] | None = None

    def cells(self) -> tuple[str, str, str, str]:
        if self.value is None:
            return self.figure, "n/a", self.target, "-"
        if self.unit == "/s":
            value = f"{self.value:,.0f} /s"
        elif self.unit == "ms":
            value = f"{self.value:.2f} ms"
        elif self.unit == "%":
            value = percent(self.value)
        elif self.unit == "n":
            value = f"{self.value:,.0f}"
        else:
            value = f"{self.value:.2f}"
        verdict = "-" if self.met is None else ("yes" if self.met(self.value) else "NO")
        return self.figure, value, self.target, verdict


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summary_rows(results: Results) -> list[Row]:
    http = results.http

    def rate(key: str) -> float | None:
        return http[key].claims_per_second if key in http else None

    def p99(key: str) -> float | None:
        return http[key].p99_ms if key in http else None

    def loop(n: int) -> float | None:
        return results.loops[n].claims_per_second if n in results.loops else None

    def cpu_per_claim(key: str) -> float | None:
        return http[key].server_ms_per_claim if key in http else None

    speeds = results.core_speeds
    loadgen = max((r.loadgen_cpu for r in http.values()), default=None)
    other = max((r.other_cpu for r in http.values()), default=None)
    refused = sum(r.non_2xx + r.errors for r in http.values())
    dry = sum(r.empty for r in http.values())
    return [
        Row(
            "PG ours Bearer, 8 clients", rate("pg.bearer.8"), "/s", ">= 2,000", lambda v: v >= 2000
        ),
        Row(
            "PG ours Bearer, 8 clients, p99", p99("pg.bearer.8"), "ms", "< 10 ms", lambda v: v < 10
        ),
        Row(
            "PG ours Bearer, 64 clients",
            rate("pg.bearer.64"),
            "/s",
            ">= 2,000",
            lambda v: v >= 2000,
        ),
        Row("PG ours Bearer, 64 clients, p99", p99("pg.bearer.64"), "ms"),
        Row("PG ours Basic, 8 clients", rate("pg.basic.8"), "/s"),
        Row(
            "Basic / Bearer, 8 clients",
            _ratio(rate("pg.basic.8"), rate("pg.bearer.8")),
            "x",
            ">= 0.80 (within 20 %)",
            lambda v: v >= 0.8,
        ),
        Row("PG bare, 8 clients", rate("bare.8"), "/s"),
        Row("PG bare, 64 clients", rate("bare.64"), "/s"),
        Row(
            "ours / bare, 8 clients",
            _ratio(rate("pg.bearer.8"), rate("bare.8")),
            "x",
            ">= 0.50",
            lambda v: v >= 0.5,
        ),
        Row(
            "ours / bare, 64 clients",
            _ratio(rate("pg.bearer.64"), rate("bare.64")),
            "x",
            ">= 0.50",
            lambda v: v >= 0.5,
        ),
        Row("PG claim SQL, asyncpg, 1 connection", loop(1), "/s"),
        Row("PG claim SQL, asyncpg, 8 connections", loop(8), "/s"),
        Row(
            "MariaDB ours Bearer, 8 clients",
            rate("mariadb.bearer.8"),
            "/s",
            ">= 800",
            lambda v: v >= 800,
        ),
        Row(
            "SQLite ours Bearer, 8 clients",
            rate("sqlite.bearer.8"),
            "/s",
            ">= 1,500",
            lambda v: v >= 1500,
        ),
        Row("PG ours server CPU per claim, 8 clients", cpu_per_claim("pg.bearer.8"), "ms"),
        Row("PG bare server CPU per claim, 8 clients", cpu_per_claim("bare.8"), "ms"),
        Row("load generator CPU, busiest run", loadgen, "%", "small (not the bottleneck)"),
        Row("other processes' CPU, busiest run", other, "%", "~0 (a quiet machine)"),
        Row("core speed after the fastest run", min(speeds, default=None), "ms", "lower is faster"),
        Row("core speed after the slowest run", max(speeds, default=None), "ms", "lower is faster"),
        Row(
            "non-2xx + socket errors, all runs",
            float(refused) if http else None,
            "n",
            "0",
            lambda v: v == 0,
        ),
        Row(
            "204 (queue ran dry), all runs",
            float(dry) if http else None,
            "n",
            "0",
            lambda v: v == 0,
        ),
    ]


SHARED_MACHINE = 0.10


def caveats(results: Results) -> list[str]:
    """Warnings a reader needs before trusting the figures."""
    notes = []
    busy = {key: r.other_cpu for key, r in results.http.items() if r.other_cpu > SHARED_MACHINE}
    if busy:
        worst = max(busy.values())
        notes.append(
            f"note: other processes used up to {percent(worst)} of the cores during "
            f"{len(busy)} of {len(results.http)} runs: the machine was shared, so throughput "
            "and latency are below what a quiet machine gives (CPU per claim is less affected)"
        )
    return notes


def summary_table(results: Results) -> str:
    return table(summary_rows(results))


def table(figures: list[Row]) -> str:
    """Rows as a Markdown table: figure, value, target, met?"""
    header = ("figure", "value", "target", "met?")
    rows = [header] + [row.cells() for row in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]

    def line(cells: tuple[str, str, str, str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])

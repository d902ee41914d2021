"""The Markdown report, the machine it ran on, and the scaling plot."""

import hashlib
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import LoadResult

# SPEC §8, at 100 connections.
TARGET_CONNECTIONS = 100
TARGET_THROUGHPUT_RATIO = 0.8
TARGET_P99_RATIO = 1.5
TARGET_SCENARIOS = ("get-one", "list-default")
TARGET_SCALING_RATIO = 1.5
TIMES = "\N{MULTIPLICATION SIGN}"


def rps_ratio(result: LoadResult, against: LoadResult) -> float:
    return result.rps / against.rps if against.rps else float("nan")


def p99_ratio(result: LoadResult, against: LoadResult) -> float:
    return result.p99_ms / against.p99_ms if against.p99_ms else float("nan")


@dataclass(frozen=True, slots=True)
class Cell:
    """One scenario at one concurrency: the API, the baseline and, for the target scenarios,
    the FastAPI floor (bench/fastapi_floor.py), back to back."""

    scenario: str
    connections: int
    api: LoadResult
    baseline: LoadResult
    floor: LoadResult | None = None

    @property
    def rps_ratio(self) -> float:
        return rps_ratio(self.api, self.baseline)

    @property
    def p99_ratio(self) -> float:
        return p99_ratio(self.api, self.baseline)


@dataclass(frozen=True, slots=True)
class ScalingPoint:
    tasks: int
    deep_after: int
    first: LoadResult
    deep: LoadResult


@dataclass(slots=True)
class Report:
    title: str
    header: list[tuple[str, str]]
    cells: list[Cell] = field(default_factory=list)
    scaling: list[ScalingPoint] = field(default_factory=list)
    scaling_connections: int = 10
    notes: list[str] = field(default_factory=list)


def machine_info(postgres_version: str, wrk_version: str, repo: Path) -> list[tuple[str, str]]:
    return [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} logical CPUs (nproc)"),
        ("RAM", _memory()),
        ("Load average before the run", _loadavg()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("PostgreSQL", postgres_version),
        ("Python", platform.python_version()),
        ("wrk", wrk_version),
        ("Commit", _commit(repo)),
    ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def loadavg() -> str:
    return _loadavg()


def _commit(repo: Path) -> str:
    def git(*args: str) -> str:
        result = subprocess.run(  # noqa: S603 (fixed arguments)
            ["git", *args],  # noqa: S607 (git from PATH)
            cwd=repo, capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        return result.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changes = git("diff", "HEAD", "--", "src")
    if not changes:
        return commit
    # Names the working tree that was measured, so two runs can tell whether they saw the same.
    digest = hashlib.sha256(changes.encode()).hexdigest()[:12]
    return f"{commit} with uncommitted changes in src/ (diff sha256 {digest})"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ratio(value: float) -> str:
    return f"{value:.2f}{TIMES}"


def _non2xx(result: LoadResult) -> str:
    if not result.non2xx:
        return "0"
    detail = ", ".join(f"{status}: {count}" for status, count in sorted(result.statuses.items()))
    return f"**{result.non2xx}** ({detail})"


def _errors(result: LoadResult) -> str:
    text = f"{result.connect_errors}/{result.read_errors}/{result.write_errors}/{result.timeouts}"
    return f"**{text}**" if result.socket_errors else text


def _row(cell: Cell, server: str, result: LoadResult, against: LoadResult | None) -> str:
    rps = ratio(rps_ratio(result, against)) if against else ""
    p99 = ratio(p99_ratio(result, against)) if against else ""
    return (
        f"| {cell.scenario} | {cell.connections} | {server} | {result.rps:,.0f} | "
        f"{_ms(result.p50_ms)} | {_ms(result.p90_ms)} | {_ms(result.p99_ms)} | "
        f"{_non2xx(result)} | {_errors(result)} | {rps} | {p99} |"
    )


def results_table(cells: list[Cell]) -> list[str]:
    lines = [
        "| scenario | conns | server | req/s | p50 ms | p90 ms | p99 ms | non-2xx "
        "| socket errors c/r/w/timeout | req/s ÷ base | p99 ÷ base |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        lines.append(_row(cell, "API", cell.api, against=cell.baseline))
        if cell.floor:
            lines.append(_row(cell, "FastAPI floor", cell.floor, against=cell.baseline))
        lines.append(_row(cell, "baseline", cell.baseline, against=None))
    return lines


def floor_table(cells: list[Cell]) -> list[str]:
    """API ÷ baseline split into FastAPI floor ÷ baseline (the framework) and API ÷ floor (the
    API's own layers): the two multiply to the first."""
    lines = [
        "| scenario | conns | req/s: API ÷ baseline | FastAPI floor ÷ baseline | API ÷ floor "
        "| p99: API ÷ baseline | FastAPI floor ÷ baseline | API ÷ floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        if cell.floor is None:
            continue
        lines.append(
            f"| {cell.scenario} | {cell.connections} | {ratio(cell.rps_ratio)} | "
            f"{ratio(rps_ratio(cell.floor, cell.baseline))} | "
            f"{ratio(rps_ratio(cell.api, cell.floor))} | {ratio(cell.p99_ratio)} | "
            f"{ratio(p99_ratio(cell.floor, cell.baseline))} | "
            f"{ratio(p99_ratio(cell.api, cell.floor))} |"
        )
    return lines


def _mark(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def targets_table(report: Report) -> list[str]:
    lines = ["| target (SPEC §8) | measured | verdict |", "|---|---|---|"]
    at_target = [cell for cell in report.cells if cell.connections == TARGET_CONNECTIONS]
    for cell in at_target:
        failures = cell.api.non2xx + cell.api.socket_errors
        lines.append(
            f"| {cell.scenario} at {TARGET_CONNECTIONS} conns: no errors, no time-outs | "
            f"{cell.api.non2xx} non-2xx, {cell.api.socket_errors} socket errors/time-outs | "
            f"{_mark(failures == 0)} |"
        )
    for cell in at_target:
        if cell.scenario not in TARGET_SCENARIOS:
            continue
        floor_rps = floor_p99 = ""
        if cell.floor:
            floor_rps = f" (FastAPI floor: {ratio(rps_ratio(cell.floor, cell.baseline))})"
            floor_p99 = f" (FastAPI floor: {ratio(p99_ratio(cell.floor, cell.baseline))})"
        lines.append(
            f"| {cell.scenario} at {TARGET_CONNECTIONS} conns: req/s ≥ "
            f"{TARGET_THROUGHPUT_RATIO}{TIMES} baseline | {ratio(cell.rps_ratio)}{floor_rps} | "
            f"{_mark(cell.rps_ratio >= TARGET_THROUGHPUT_RATIO)} |"
        )
        lines.append(
            f"| {cell.scenario} at {TARGET_CONNECTIONS} conns: p99 ≤ {TARGET_P99_RATIO}{TIMES} "
            f"baseline | {ratio(cell.p99_ratio)}{floor_p99} | "
            f"{_mark(cell.p99_ratio <= TARGET_P99_RATIO)} |"
        )
    if len(report.scaling) >= 2:
        small, large = report.scaling[0], report.scaling[-1]
        for page in ("first", "deep"):
            big, tiny = _page(large, page), _page(small, page)
            for metric, value in (
                ("p50", big.p50_ms / tiny.p50_ms),
                ("p99", big.p99_ms / tiny.p99_ms),
            ):
                lines.append(
                    f"| {page} page {metric} at {large.tasks:,} tasks "
                    f"≤ {TARGET_SCALING_RATIO}{TIMES} at {small.tasks:,} | {ratio(value)} | "
                    f"{_mark(value <= TARGET_SCALING_RATIO)} |"
                )
    if len(lines) == 2:
        lines.append(f"| (no run at {TARGET_CONNECTIONS} connections or scaling) | | |")
    return lines


def _page(point: ScalingPoint, page: str) -> LoadResult:
    return point.first if page == "first" else point.deep


def scaling_table(points: list[ScalingPoint]) -> list[str]:
    lines = [
        "| tasks of the user | page | req/s | p50 ms | p90 ms | p99 ms | non-2xx "
        "| socket errors c/r/w/timeout |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for point in points:
        for page, result in (
            ("first", point.first),
            (f"deep (after row {point.deep_after:,})", point.deep),
        ):
            lines.append(
                f"| {point.tasks:,} | {page} | {result.rps:,.0f} | {_ms(result.p50_ms)} | "
                f"{_ms(result.p90_ms)} | {_ms(result.p99_ms)} | {_non2xx(result)} | "
                f"{_errors(result)} |"
            )
    if len(points) >= 2:
        small, large = points[0], points[-1]
        lines.append("")
        for page in ("first", "deep"):
            big, tiny = _page(large, page), _page(small, page)
            lines.append(
                f"- {page} page, {large.tasks:,} ÷ {small.tasks:,} tasks: p50 "
                f"{ratio(big.p50_ms / tiny.p50_ms)}, p99 {ratio(big.p99_ms / tiny.p99_ms)}, "
                f"req/s {ratio(big.rps / tiny.rps)} "
                f"(target: latency ≤ {TARGET_SCALING_RATIO}{TIMES})"
            )
    return lines


def render(report: Report, plot_name: str | None) -> str:
    lines = [f"# {report.title}", ""]
    lines += [f"- **{name}**: {value}" for name, value in report.header]
    lines += ["", "## Targets", "", *targets_table(report)]
    if any(cell.floor for cell in report.cells):
        lines += [
            "",
            "### The framework's floor",
            "",
            "The FastAPI floor is the smallest idiomatic FastAPI app doing the baseline's work "
            "(bench/fastapi_floor.py). *FastAPI floor ÷ baseline* is what the framework costs "
            "against raw ASGI; *API ÷ floor* is what the API's own layers cost on top of it. "
            "Their product is *API ÷ baseline*. req/s: higher is better; p99: lower is better.",
            "",
            *floor_table(report.cells),
        ]
    if report.cells:
        with_floor = list(dict.fromkeys(cell.scenario for cell in report.cells if cell.floor))
        floor_turn = (
            f" (for {' and '.join(with_floor)}, then the FastAPI floor)" if with_floor else ""
        )
        lines += [
            "",
            "## Scenarios",
            "",
            f"Each scenario runs against the API, then against the baseline{floor_turn}, for "
            "the same time. Latencies in milliseconds (wrk, from the client side); *non-2xx* "
            "counts every answer outside 200-299; socket errors are wrk's connect/read/write "
            "errors and time-outs. The ratio columns compare each row with the baseline's.",
            "",
            *results_table(report.cells),
        ]
    if report.scaling:
        lines += [
            "",
            f"## Scaling: one user's listing against their task count (API, "
            f"{report.scaling_connections} connections)",
            "",
            *scaling_table(report.scaling),
        ]
        if plot_name:
            lines += ["", f"![latency against task count]({plot_name})"]
    if report.notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in report.notes]]
    return "\n".join(lines) + "\n"


def plot_scaling(points: list[ScalingPoint], path: Path, connections: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [point.tasks for point in points]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for page, color in (("first", "tab:blue"), ("deep", "tab:red")):
        results = [_page(point, page) for point in points]
        p50 = [result.p50_ms for result in results]
        p99 = [result.p99_ms for result in results]
        axes.plot(tasks, p50, "-", color=color, marker="o", label=f"{page} page p50")
        axes.plot(tasks, p99, "--", color=color, marker="^", label=f"{page} page p99")
    axes.set_xscale("log")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("tasks of the user (log scale)")
    axes.set_ylabel("latency (ms)")
    axes.set_title(f"GET /api/tasks (100 a page), {connections} connections")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)

"""Tables (Markdown) and the cost-curve plot (PNG) from a run's rows."""

from __future__ import annotations

from pathlib import Path

from bench.harness import Row

PLOT = "cost-curve.png"


def _s(value: float | None) -> str:
    return f"{value:.3f}s" if value is not None else "-"


def main_table(rows: list[Row]) -> str:
    lines = [
        "| scenario | provider | size | RTT | median | p90 | requests | bytes up | bytes down | git median | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.table != "main":
            continue
        ratio = f"{r.ratio:.2f}x" if r.ratio else "-"
        note = f" ({r.note})" if r.note else ""
        lines.append(
            f"| {r.scenario}{note} | {r.provider} | {r.size} | {r.rtt_ms} ms | {r.median_s:.3f}s | {r.p90_s:.3f}s | {r.requests} | {r.bytes_up} | {r.bytes_down} | {_s(r.git_median_s)} | {ratio} |"
        )
    return "\n".join(lines)


def curve_table(rows: list[Row]) -> str:
    """How cost grows: materialize by files, commit by files, the service by runners."""
    lines = [
        "| what | provider | n | median | p90 | git median | ratio | requests |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, n in _curve(rows):
        r = kind
        ratio = f"{r.ratio:.2f}x" if r.ratio else "-"
        lines.append(
            f"| {_family(r)} | {r.provider} | {n} | {r.median_s:.3f}s | {r.p90_s:.3f}s | {_s(r.git_median_s)} | {ratio} | {r.requests} |"
        )
    return "\n".join(lines)


def _family(r: Row) -> str:
    if r.scenario == "materialize":
        return "materialize (files)"
    if r.scenario.startswith("commit+push"):
        return "commit+push (files)"
    return r.scenario.split(" x")[0] + " (runners)"


def _n(r: Row) -> int | None:
    if r.scenario == "materialize" and r.size.isdigit():
        return int(r.size)
    if r.scenario.startswith("commit+push"):
        return int(r.scenario.split()[1])
    if r.scenario.startswith("service") and " x" in r.scenario and "stampede" not in r.scenario:
        return int(r.scenario.rsplit("x", 1)[1])
    return None


def _curve(rows: list[Row]) -> list[tuple[Row, int]]:
    picked = [
        (r, n)
        for r in rows
        if r.rtt_ms and (n := _n(r)) is not None and r.provider != "github-rest"
    ]
    return sorted(picked, key=lambda p: (_family(p[0]), p[0].provider, p[1]))


def memory_table(rows: list[Row]) -> str:
    lines = [
        "| materialize | provider | files | peak RSS | wall | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.table == "memory":
            lines.append(
                f"| {r.scenario} | {r.provider} | {r.size} | {r.value:.0f} MB | {r.median_s:.2f}s | {r.note} |"
            )
    return "\n".join(lines)


def service_table(rows: list[Row]) -> str:
    lines = [
        "| scenario | value | median / p50 | p99 / p90 | forge requests | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.table == "service":
            value = f"{r.value:.0f} req/s" if "wrk" in r.scenario else f"{r.value:.0f} errors"
            lines.append(
                f"| {r.scenario} | {value} | {r.median_s * 1000:.1f} ms | {r.p90_s * 1000:.1f} ms | {r.requests} | {r.note} |"
            )
    return "\n".join(lines)


def runner_table(rows: list[Row]) -> str:
    lines = [
        "| scenario | provider | wall median | overhead | requests | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.table == "runner":
            lines.append(
                f"| {r.scenario} | {r.provider} | {r.median_s:.3f}s | {r.value:.3f}s | {r.requests} | {r.note} |"
            )
    return "\n".join(lines)


def check_table(rows: list[Row]) -> str:
    """`meltano-forge check`: the CLI in a fresh process, and the check in process."""
    lines = [
        "| check | project | files | median | p90 | CPU (median); findings |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.table == "check":
            lines.append(
                f"| {r.scenario.removeprefix('check, ')} | {r.provider} | {r.size} | {r.median_s:.3f}s | {r.p90_s:.3f}s | {r.note} |"
            )
    return "\n".join(lines)


def markdown(rows: list[Row], header: str) -> str:
    parts = [
        header,
        "",
        main_table(rows),
        "",
        "**Runner overhead** (wall time minus the same `meltano` command alone in a ready folder) and CLI start-up:",
        "",
        runner_table(rows),
        "",
        "**Check** (`meltano-forge check` in a workspace folder: the CLI as a fresh process, "
        "and `check_project` in process, warm; target under 0.3 s on the fixtures):",
        "",
        check_table(rows),
        "",
        "**Service**: warm throughput (`wrk`, 2 threads, on the same 2 cores as the service) and a cold stampede on a new SHA:",
        "",
        service_table(rows),
        "",
        "**Peak memory** (RSS of the pulling process, `os.wait4`):",
        "",
        memory_table(rows),
        "",
        f"**Cost curve** (plot: `bench/{PLOT}`):",
        "",
        curve_table(rows),
    ]
    return "\n".join(parts) + "\n"


def plot(rows: list[Row], path: Path) -> bool:
    """Three panels, log-log: materialize by files, commit by files, service by runners."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", flush=True)
        return False
    families = [
        "materialize (files)",
        "commit+push (files)",
        "service cold pull (runners)",
        "service warm pull (runners)",
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = {
        families[0]: axes[0],
        families[1]: axes[1],
        families[2]: axes[2],
        families[3]: axes[2],
    }
    series: dict[tuple[str, str], list[tuple[int, float, float | None]]] = {}
    for r, n in _curve(rows):
        series.setdefault((_family(r), r.provider), []).append((n, r.median_s, r.git_median_s))
    for (family, provider), points in series.items():
        ax = panels.get(family)
        if ax is None:
            continue
        points.sort()
        label = (
            provider
            if not family.startswith("service")
            else family.split(" (")[0].replace("service ", "")
        )
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        if (
            provider in ("github", "local")
            and all(p[2] for p in points)
            and not family.startswith("service")
        ):
            ax.plot(
                [p[0] for p in points],
                [p[2] for p in points],
                linestyle="--",
                marker="x",
                label=f"git ({provider})",
            )
    titles = ["materialize, 50 ms RTT", "commit and push, 50 ms RTT", "service: pulls of one SHA"]
    xlabels = ["files in the project", "files changed", "concurrent runners"]
    for ax, title, xlabel in zip(axes, titles, xlabels, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds (median)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

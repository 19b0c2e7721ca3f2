"""Helpers shared by the benches: the machine, child processes with their peak RSS, medians, tables.

Every measured piece of work runs in its own child process, so its peak RSS is its own. The child
is wrapped in ``/usr/bin/time -v`` when that exists (peak RSS = "Maximum resident set size");
otherwise the parent reads the child's own ``rusage`` from ``os.wait4`` (same figure, same
kernel counter). ``RSS_METHOD`` says which one was used; the README table names it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
GNU_TIME = "/usr/bin/time"
RSS_METHOD = "/usr/bin/time -v" if os.access(GNU_TIME, os.X_OK) else "os.wait4 rusage"


@dataclass
class ChildRun:
    """One child process: its wall time, peak RSS, exit code and the JSON it wrote."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    result: dict = field(default_factory=dict)
    stderr_tail: str = ""
    stdout_tail: str = ""


def machine_info() -> dict:
    """What the figures were measured on (CPU, cores, memory, versions, load at the start)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    versions = {}
    for mod in ("pandas", "pyarrow", "numpy", "dagster"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # a missing module is reported, not fatal
            versions[mod] = "n/a"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "rss_method": RSS_METHOD,
        **versions,
    }


def _parse_gnu_time(text: str) -> float:
    m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", text)
    return int(m.group(1)) / 1024 if m else float("nan")


def run_child(
    args: list[str], *, env: dict | None = None, timeout: float = 900, result_arg: bool = True
) -> ChildRun:
    """Run ``python args... --result FILE`` in a child process (the child writes its JSON result
    there; ``result_arg=False`` for scripts without that option). Returns wall time, peak RSS, exit
    code, that JSON and the tail of stdout / stderr."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        result_path = os.path.join(tmp, "result.json")
        time_path = os.path.join(tmp, "time.txt")
        cmd = [sys.executable, *args, *(["--result", result_path] if result_arg else [])]
        gnu = RSS_METHOD.startswith(GNU_TIME)
        if gnu:
            cmd = [GNU_TIME, "-v", "-o", time_path, *cmd]
        # Output goes to files, not pipes: a chatty child can never block on a full pipe.
        with open(os.path.join(tmp, "out"), "w+") as out, open(os.path.join(tmp, "err"), "w+") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=ROOT, stdout=out, stderr=err)
            if gnu:
                code = proc.wait(timeout=timeout)
                wall = time.perf_counter() - start
                rss = _parse_gnu_time(Path(time_path).read_text()) if os.path.exists(time_path) else math.nan
            else:
                # wait4 gives this child's own rusage: its peak RSS, not the max over all children.
                _, status, usage = os.wait4(proc.pid, 0)
                wall = time.perf_counter() - start
                proc.returncode = code = os.waitstatus_to_exitcode(status)
                rss = usage.ru_maxrss / 1024  # kB on Linux
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        result = json.loads(Path(result_path).read_text()) if os.path.exists(result_path) else {}
    return ChildRun(wall, rss, code, result, stderr[-3000:], stdout[-3000:])


def write_result(path: str | None, doc: dict) -> None:
    """Write a child's JSON result (the parent reads it after the child exits)."""
    if path:
        Path(path).write_text(json.dumps(doc, indent=2, default=str))


def spread(values: list[float]) -> dict:
    """Median, min and max of repeated measurements (NaN-free)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt_spread(s: dict, unit: str = "s", digits: int = 2) -> str:
    """``1.23 s (1.10–1.40)``."""
    if not s.get("n"):
        return "n/a"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f} {unit}".strip()
    return f"{s['median']:.{digits}f} {unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})".replace(
        " (", " ("
    )


def loglog_slope(sizes: list[float], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(size): the growth exponent."""
    pts = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0]
    if len(pts) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else math.nan


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path

"""Every bench of the product, one table: ``make bench`` (``uv run python bench/run_bench.py``).

    uv run python bench/run_bench.py [--repeat 3] [--only full,scale,advisor,storage,sensor]
                                     [--trucks 11] [--sizes 10000,100000,1000000]
                                     [--repeat-others 1] [--update-readme] [--wait-quiet 300]

Sections (each measured piece in its own child process, see bench/common.py):

* ``full``    — full cold run of one client on real-format workbooks vs the python-calamine parse
  floor (bench/full_run.py);
* ``scale``   — limits + classification + machine status (+ quality) on 10 k / 100 k / 1 M
  synthetic samples, peak RSS, growth exponent (bench/scale.py);
* every other ``bench/*_bench.py`` of the other issues (advisor, storage, sensor, …), once each
  (``--repeat-others N`` for more): their own result line goes in the table.

Prints the tables and writes ``bench/out/bench.json`` and ``bench/out/bench.md``;
``--update-readme`` also replaces the results section of ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from common import OUT, fmt_spread, machine_info, markdown_table, run_child, spread  # noqa: E402
from full_run import full_table, run_full  # noqa: E402
from scale import DEFAULT_SIZES, _target_rss, run_scale, scale_table  # noqa: E402

SECTIONS = ("full", "scale")
README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"


def other_benches() -> dict[str, str]:
    """``{name: script}`` of the other issues' benches (``bench/{name}_bench.py``; not this file)."""
    return {
        p.stem.removesuffix("_bench"): f"bench/{p.name}"
        for p in sorted((ROOT / "bench").glob("*_bench.py"))
        if p.resolve() != Path(__file__).resolve()
    }


def wait_quiet(max_wait_s: float, threshold: float = 1.0) -> float:
    """Wait (at most ``max_wait_s``) for the 1-minute load average to fall below ``threshold``:
    other work on a 2-core machine doubles every figure. Returns the load when starting."""
    deadline = time.time() + max_wait_s
    while os.getloadavg()[0] >= threshold and time.time() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]


def run_script_bench(script: str, args: list[str], repeat: int, prefix: str) -> dict:
    """Run another engineer's bench script ``repeat`` times; keep its result line and the figures."""
    lines, walls, rss, codes = [], [], [], []
    for _ in range(repeat):
        child = run_child([script, *args], result_arg=False)
        line = next((ln for ln in child.stdout_tail.splitlines() if ln.startswith(prefix)), "")
        lines.append(line or (child.stderr_tail.strip().splitlines() or [""])[-1])
        walls.append(child.wall_s)
        rss.append(child.peak_rss_mb)
        codes.append(child.returncode)
    return {
        "lines": lines,
        "process_wall": spread(walls),
        "peak_rss_mb": spread(rss),
        "returncodes": codes,
    }


def _line_figures(name: str, doc: dict) -> str:
    """The figures of another bench's result line (its text after the colon when not parsed)."""
    line = str(doc["lines"][0]) if doc["lines"] else ""
    if name == "advisor":
        fig = advisor_figures(doc)
        if fig["seconds"]["n"]:
            return f"{fmt_spread(fig['seconds'])}, {fmt_spread(fig['calls_per_s'], 'calls/s', 1)}"
    if name == "storage":
        m = re.search(r"local ([0-9.]+) s, S3 .*? ([0-9.]+) s, ratio ([0-9.]+)", line)
        if m:
            return f"local {m.group(1)} s, S3 {m.group(2)} s, ratio {m.group(3)}"
    text = line.split(":", 1)[-1].strip()
    return text if all(c == 0 for c in doc["returncodes"]) else f"{text} (exit {doc['returncodes']})"


def advisor_figures(doc: dict) -> dict:
    seconds, rates = [], []
    for line in doc["lines"]:
        m = re.search(r"concurrency \d+: ([0-9.]+) s, ([0-9.]+) calls/s", str(line))
        if m:
            seconds.append(float(m.group(1)))
            rates.append(float(m.group(2)))
    return {"seconds": spread(seconds), "calls_per_s": spread(rates)}


def summary_table(doc: dict) -> str:
    """The one table of the README: every bench, median (min–max) and peak RSS."""
    rows = []
    if "full" in doc:
        f = doc["full"]
        rows.append(
            [
                f"full cold run, {f['trucks']} workbooks ({f['samples']:,} samples), all assets, AI off",
                f"materialize {fmt_spread(f['run']['materialize'])}; process {fmt_spread(f['run']['process_wall'])}",
                fmt_spread(f["run"]["peak_rss_mb"], "MB", 0),
            ]
        )
        rows.append(
            [
                "parse floor: python-calamine, OIL sheets → rows, sequential",
                f"{fmt_spread(f['floor']['seq'])}; 2 processes {fmt_spread(f['floor']['par2'])}",
                "",
            ]
        )
        rows.append(["**full run / parse floor**", f"**{f['ratio']:.2f}×** (target ≤ 1.4×)", ""])
        for asset, v in f["run"]["steps"].items():
            rows.append([f"step `{asset}` (Dagster STEP_SUCCESS)", fmt_spread(v["compute_s"]), ""])
    if "scale" in doc:
        for r in doc["scale"]["sizes"]:
            rows.append(
                [
                    f"scale {r['samples']:,} samples: limits + classify + status",
                    f"{fmt_spread(r['target'])} (with quality {fmt_spread(r['with_quality'])})",
                    f"{fmt_spread(_target_rss(r), 'MB', 0)} (with quality {fmt_spread(r['peak_rss_mb'], 'MB', 0)})",
                ]
            )
        e = doc["scale"]["exponents"]
        upper = f" ({e['target_from_100k']:.2f} from 100 k up)" if "target_from_100k" in e else ""
        rows.append(
            [
                "scale: growth exponent (log-log slope; peak RSS's in the last column)",
                f"{e['target']:.2f}{upper}",
                f"{e['peak_rss']:.2f}",
            ]
        )
    for name, other in doc.get("others", {}).items():
        runs = len(other["lines"])
        rows.append(
            [
                f"{name}: `{other['script']}`" + (f" ({runs} runs)" if runs > 1 else ""),
                _line_figures(name, other),
                fmt_spread(other["peak_rss_mb"], "MB", 0),
            ]
        )
    return markdown_table(["bench", "median (min–max)", "peak RSS"], rows)


def render(doc: dict) -> str:
    m = doc["machine"]
    parts = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['os']}; Python {m['python']}, "
        f"pandas {m['pandas']}, pyarrow {m['pyarrow']}, dagster {m['dagster']}. Date {m['date']}. "
        f"Load average at start {doc.get('load_at_start', m['load_avg_1m'])}; peak RSS by {m['rss_method']}. "
        f"Medians of {doc['repeat']} runs (min–max)"
        + (f"; the whole bench took {doc['bench_seconds']:.0f} s" if "bench_seconds" in doc else "")
        + (f", load average at the end {m['load_avg_1m_end']}." if "load_avg_1m_end" in m else "."),
        "",
        summary_table(doc),
    ]
    if "full" in doc:
        parts += ["", "### Full cold run", "", full_table(doc["full"])]
    if "scale" in doc:
        parts += ["", "### Scale", "", scale_table(doc["scale"])]
    if doc.get("others"):
        parts += ["", "### Other benches (their own result lines)", ""]
        for other in doc["others"].values():
            parts += [f"    {ln}" for ln in other["lines"]]
    return "\n".join(parts) + "\n"


def update_readme(text: str, readme: Path = README) -> None:
    """Replace the results section of bench/README.md (between the markers)."""
    old = readme.read_text()
    if BEGIN not in old or END not in old:
        raise SystemExit(f"{readme}: markers {BEGIN} / {END} not found")
    head, rest = old.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", help="comma list of: full, scale and the other benches' names (default: all)")
    ap.add_argument("--repeat-others", type=int, default=1)
    ap.add_argument("--trucks", type=int, default=11)
    ap.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--wait-quiet", type=float, default=0.0, help="seconds to wait for a quiet machine")
    ap.add_argument("--from-json", help="render (and --update-readme) a saved bench.json, run nothing")
    a = ap.parse_args(argv)
    if a.from_json:
        text = render(json.loads(Path(a.from_json).read_text()))
        print(text)
        if a.update_readme:
            update_readme(text)
        return 0
    others = other_benches()
    known = [*SECTIONS, *others]
    only = [s.strip() for s in a.only.split(",") if s.strip()] if a.only else known
    unknown = set(only) - set(known)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; known: {', '.join(known)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    doc: dict = {"machine": machine_info(), "repeat": a.repeat}
    if a.wait_quiet:
        doc["load_at_start"] = round(wait_quiet(a.wait_quiet), 2)
    started = time.perf_counter()
    if "full" in only:
        doc["full"] = run_full(a.trucks, a.repeat)
    if "scale" in only:
        sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
        doc["scale"] = run_scale(sizes, a.repeat, out_dir=out / "scale")
    for name, script in others.items():
        if name in only:
            result = run_script_bench(script, [], a.repeat_others, f"{name}_bench:")
            doc.setdefault("others", {})[name] = {"script": script, **result}
    doc["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    doc["bench_seconds"] = round(time.perf_counter() - started, 1)
    text = render(doc)
    print(text)
    print(
        f"(bench took {doc['bench_seconds']:.0f} s; load average at the end {doc['machine']['load_avg_1m_end']})"
    )
    (out / "bench.json").write_text(json.dumps(doc, indent=2, default=str))
    (out / "bench.md").write_text(text)
    if a.update_readme:
        update_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

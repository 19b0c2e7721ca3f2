"""Scale bench: synthetic silver of 10 k – 1 M samples straight into limits, classification, status.

    uv run python bench/scale.py [--sizes 10000,100000,1000000] [--repeat 3] [--json bench/out/scale.json]
    uv run python bench/scale.py generate --n 100000 --out bench/out/scale/silver_100000.parquet
    uv run python bench/scale.py measure --silver bench/out/scale/silver_100000.parquet

The synthetic client has the silver schema (``harmonize.silver_columns``, dtypes as harmonize pins
them) and the essay distributions of the real Finning client (``oil_analysis/demo/profiles.json``:
per compartment, the null share, zero share and quantiles of every column, the flag letters, the
ISO / visual particle codes and the lab verdicts). About ``n / 2000`` units (5 to 500) of four
machine types × the 10 Finning compartments, sampled every ~9 days over five years, so a 1 M client
is 500 units × 10 components × ~200 samples. Every unit-component series has its own level (a
log-normal factor), wear metals, PQ and oxidation products rise with the oil's age (rank
correlation ≈ 0.75 with ``oilMeter``, as the real motor iron), and 2 % of the series end with a wear
fault (iron and PQ rising over the last five samples). Deterministic for a given size and seed.

Each size is measured in its own child process (peak RSS is that size's own): read silver from
parquet as the IO manager does, then ``compute_limits``, ``classify_reports``,
``machine_status_current`` and ``limit_quality``, each timed. The growth exponent is the log-log
slope of the time against the number of samples.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import (  # noqa: E402
    OUT,
    fmt_spread,
    loglog_slope,
    machine_info,
    markdown_table,
    run_child,
    spread,
    write_result,
)

from oil_analysis.demo.profiles import Marginal, load_profiles  # noqa: E402
from oil_analysis.domain.catalog import load_catalog  # noqa: E402
from oil_analysis.domain.harmonize import (  # noqa: E402
    DATE_COLUMNS,
    FLOAT_COLUMNS,
    STRING_COLUMNS,
    link_previous,
    oil_hour_range,
    silver_columns,
)
from oil_analysis.domain.labs.common import FLAG_LEVELS  # noqa: E402
from oil_analysis.domain.labs.particles import parse_particle_field  # noqa: E402
from oil_analysis.domain.limits import LimitParams  # noqa: E402
from oil_analysis.domain.names import fold, normalize_component  # noqa: E402

GENERATOR_VERSION = 2
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
START = pd.Timestamp("2021-01-01")
YEARS = 5
# Machine types of the synthetic fleet: (machineName, models, share of the units).
MACHINES = (
    ("camion", ("789C", "789D", "793F"), 0.7),
    ("cargador frontal", ("994F",), 0.1),
    ("bulldozer", ("D10T",), 0.1),
    ("motoniveladora", ("16M",), 0.1),
)
# Essays that grow with the oil's age, and how strongly (the real CDA motor iron: ≈ 0.8).
AGEING = {"fe", "cr", "cu", "pb", "al", "pq_index", "soot", "oxidation", "nitration"}
AGE_RHO = 0.75
STEPS = ("limits", "classify", "machine_status", "quality")
TARGET_STEPS = ("limits", "classify", "machine_status")


def _units(n: int) -> int:
    return int(min(500, max(5, round(n / 2000))))


def generate_silver(n: int, seed: int = 7) -> pd.DataFrame:
    """A synthetic client's silver table of about ``n`` samples (exactly ``n`` rows)."""
    rng = np.random.default_rng([seed, n])
    catalog = load_catalog()
    profile = load_profiles()["finning"]
    comps = profile["components"]
    comp_names = sorted(comps)
    n_units = _units(n)

    # Series = unit × component; each gets a share of the n samples (component share × unit pace).
    unit_pace = rng.uniform(0.8, 1.2, n_units)
    comp_share = np.array([comps[c]["share"] for c in comp_names])
    weight = (unit_pace[:, None] * comp_share[None, :]).ravel()
    counts = np.floor(weight / weight.sum() * n).astype(int)
    counts = np.maximum(counts, 1)
    short = n - counts.sum()
    if short > 0:
        extra = np.bincount(rng.choice(len(counts), short, replace=True), minlength=len(counts))
        counts += extra
    elif short < 0:
        while counts.sum() > n:
            i = int(np.argmax(counts))
            counts[i] -= min(counts[i] - 1, counts.sum() - n)
    series = np.repeat(np.arange(len(counts)), counts)
    unit = series // len(comp_names)
    comp = series % len(comp_names)
    start_of = np.r_[0, np.cumsum(counts)[:-1]]
    pos = np.arange(n) - np.repeat(start_of, counts)
    k = np.repeat(counts, counts)

    span = YEARS * 365
    day = np.floor((pos + rng.uniform(0.0, 0.9, n)) * span / k).astype(int)
    sample_date = START + pd.to_timedelta(day, unit="D")
    lag = rng.integers(2, 23, n)
    report_date = sample_date + pd.to_timedelta(lag, unit="D")

    # Units: machine type, model, hours.
    m_idx = rng.choice(len(MACHINES), n_units, p=[m[2] for m in MACHINES])
    unit_ids = np.array([f"U_{i + 1:04d}" for i in range(n_units)], dtype=object)
    unit_model = np.array([rng.choice(MACHINES[m][1]) for m in m_idx], dtype=object)
    unit_machine = np.array([MACHINES[m][0] for m in m_idx], dtype=object)
    h0 = rng.integers(5_000, 60_000, n_units).astype(float)
    machine_hours = np.round(h0[unit] + profile["machine_hours_per_day"] * day + rng.normal(0, 10, n))

    comp_folded = np.array([fold(c) for c in comp_names], dtype=object)
    comp_norm = np.array([normalize_component(c) for c in comp_folded], dtype=object)

    df = pd.DataFrame(
        {
            "client": "SCALE",
            "sampleNumber": np.char.add("L", rng.permutation(n).astype(str)).astype(object),
            "sampleDate": sample_date,
            "labDate": report_date,
            "reportDate": report_date,
            "site": "SITIO SINTETICO",
            "unitId": unit_ids[unit],
            "machineName": unit_machine[unit],
            "machineModel": unit_model[unit],
            "machineBrand": "caterpillar",
            "machineSerialNumber": np.char.add("SYN", (unit + 10000).astype(str)).astype(object),
            "machineHours": machine_hours,
            "componentName": comp_folded[comp],
            "componentNameNormalized": comp_norm[comp],
            "componentSerialNumber": None,
            "componentHours": np.where(rng.random(n) < 0.5, np.nan, machine_hours - 3000.0),
            "oilChanged": rng.random(n) < 0.1,
            "censoredEssays": None,
            "labComment": None,
            "sourceFile": "synthetic.parquet",
            "sourceRow": np.arange(n, dtype="int64"),
        }
    )
    essays = _essays(rng, catalog, comps, comp_names, comp, series, n)
    for c, values in essays.items():
        df[c] = values
    df["oilHourRange"] = oil_hour_range(df["oilMeter"])
    df = link_previous(df)
    columns = silver_columns(catalog)
    for c in columns:
        if c not in df:
            df[c] = None
    df = df[columns]
    for c in STRING_COLUMNS:
        df[c] = df[c].astype("string")
    for c in DATE_COLUMNS:
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
    for c in FLOAT_COLUMNS + catalog.essays:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["oilChanged"] = df["oilChanged"].astype("boolean")
    df["countPreventedByWater"] = df["countPreventedByWater"].fillna(False).astype(bool)
    df["sourceRow"] = df["sourceRow"].astype("int64")
    df["cellsCleared"] = pd.to_numeric(df["cellsCleared"]).fillna(0).astype("int64")  # complete samples
    df["daysSincePrevious"] = df["daysSincePrevious"].astype("Int64")
    return df


def _essays(rng, catalog, comps, comp_names, comp, series, n) -> dict[str, np.ndarray]:
    """Essay columns drawn per compartment from the profile's marginals."""
    params = LimitParams()
    units = catalog.table["unit"]
    sources = {s: e for s, e in catalog.source_columns("finning_xlsx", "percentile").items() if s != "ISO"}
    flags = catalog.source_columns("finning_xlsx", "flag")
    out = {e: np.full(n, np.nan) for e in catalog.essays}
    out.update(
        {
            "oilMeter": np.full(n, np.nan),
            "isoCode": np.full(n, None, dtype=object),
            "particleCode": np.full(n, None, dtype=object),
            "countPreventedByWater": np.zeros(n, dtype=bool),
            "labVerdict": np.full(n, None, dtype=object),
            "oilWeight": np.full(n, None, dtype=object),
            "oilBrand": np.full(n, None, dtype=object),
        }
    )
    level = np.exp(rng.normal(0.0, 0.2, series.max() + 1))  # each series has its own level
    faulty = rng.random(series.max() + 1) < 0.02
    last = np.r_[series[1:] != series[:-1], True]
    tail = np.zeros(n, dtype=bool)  # last five samples of each series
    ends = np.flatnonzero(last)
    for back in range(5):
        idx = ends - back
        tail[idx[idx >= 0]] = True
    for ci, name in enumerate(comp_names):
        rows = np.flatnonzero(comp == ci)
        if not len(rows):
            continue
        cp = comps[name]
        m = len(rows)
        # Oil hours first: wear debris and oxidation products accumulate with the oil's age.
        meter = Marginal(cp["meter_on_fluid"])
        age = rng.random(m)
        mv = np.round(meter.ppf(age))
        mv[rng.random(m) < meter.null] = np.nan
        out["oilMeter"][rows] = mv
        z_age = ndtri(np.clip(age, 1e-9, 1 - 1e-9))
        for src, essay in sources.items():
            summary = cp["columns"].get(src)
            if summary is None or summary.get("null", 1.0) >= 1.0 or "q" not in summary:
                continue
            marg = Marginal(summary)
            if essay in AGEING:  # Gaussian copula with the oil age (rank correlation ≈ AGE_RHO)
                u = ndtr(AGE_RHO * z_age + np.sqrt(1 - AGE_RHO**2) * rng.standard_normal(m))
            else:
                u = rng.random(m)
            v = marg.ppf(u)
            scale = level[series[rows]] ** (0.15 if essay.startswith("visc") else 1.0)
            v = v * scale
            if essay in ("fe", "pq_index"):
                bump = faulty[series[rows]] & tail[rows]
                v = np.where(bump, v * 3.0 + 10.0, v)
            dec = params.decimals(str(units[essay]))
            v = np.round(v, dec)
            v[rng.random(m) < marg.null] = np.nan
            out[essay][rows] = v
        for src, essay in flags.items():
            shares = cp["flags"].get(src, {"": 1.0})
            letters = list(shares)
            p = np.array([shares[x] for x in letters], dtype=float)
            pick = rng.choice(len(letters), m, p=p / p.sum())
            lv = np.array([FLAG_LEVELS.get(x, np.nan) for x in letters])
            out[essay][rows] = lv[pick]
        kinds = cp["iso_visual"]
        names = list(kinds)
        p = np.array([kinds[x] for x in names], dtype=float)
        pick = np.array(names, dtype=object)[rng.choice(len(names), m, p=p / p.sum())]
        iso = pick == "iso4406"
        if iso.any():
            codes = []
            for key in ("r4", "r6", "r14"):
                s = cp["iso_codes"].get(key, {})
                codes.append(
                    np.round(Marginal(s).ppf(rng.random(int(iso.sum()))))
                    if "q" in s
                    else np.full(int(iso.sum()), 18.0)
                )
            r4, r6, r14 = np.sort(np.vstack(codes), axis=0)[::-1]
            out["iso_4um"][rows[iso]], out["iso_6um"][rows[iso]], out["iso_14um"][rows[iso]] = r4, r6, r14
            out["isoCode"][rows[iso]] = [
                f"{a:.0f}/{b:.0f}/{c:.0f}" for a, b, c in zip(r4, r6, r14, strict=True)
            ]
        for code in set(names) - {"", "iso4406"}:
            hit = rows[pick == code]
            if not len(hit):
                continue
            try:
                parsed = parse_particle_field(code)
            except ValueError:
                continue
            out["particleCode"][hit] = parsed[1]
            out["debris_magnetic"][hit] = parsed[5]
            out["debris_nonmagnetic"][hit] = parsed[6]
            out["countPreventedByWater"][hit] = parsed[7]
        verdicts = cp["estado"]
        vnames = list(verdicts)
        p = np.array([verdicts[x] for x in vnames], dtype=float)
        v = np.array(vnames, dtype=object)[rng.choice(len(vnames), m, p=p / p.sum())]
        out["labVerdict"][rows] = np.where(v == "", None, v)
        fluids = cp["fluids"] or [[None, None, None, 1.0]]
        fp = np.array([f[3] for f in fluids], dtype=float)
        fi = rng.choice(len(fluids), m, p=fp / fp.sum())
        out["oilBrand"][rows] = np.array([f[0] for f in fluids], dtype=object)[fi]
        out["oilWeight"][rows] = np.array(
            [None if f[2] is None else str(f[2]).removesuffix(".0") for f in fluids], dtype=object
        )[fi]
    return out


# -- measuring ------------------------------------------------------------------------------------


def measure(silver_path: str) -> dict:
    """Run limits, classification, machine status and quality on one silver file, timed."""
    from oil_analysis.domain.classify import classify_reports
    from oil_analysis.domain.fleet import machine_status_current
    from oil_analysis.domain.limits import compute_limits
    from oil_analysis.domain.quality import limit_quality
    from oil_analysis.storage.filesystem import Storage

    catalog = load_catalog()
    path = Path(silver_path).resolve()
    times, cpu = {}, {}

    def timed(name, fn, *args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        times[name], cpu[name] = time.perf_counter() - t, time.process_time() - c
        return out

    silver = timed("load_silver", Storage.local(str(path.parent)).read_parquet, path.name)
    limits = timed("limits", compute_limits, silver, catalog, computed_at=silver["sampleDate"].max())
    reports = timed("classify", classify_reports, silver, limits, catalog)
    del silver
    gc.collect()
    status = timed("machine_status", machine_status_current, reports)
    rss_target = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    quality, _ = timed("quality", limit_quality, reports, limits)
    counts = reports["report_status"].value_counts()
    return {
        "samples": len(reports),
        "units": int(status.shape[0]),
        "limit_rows": len(limits),
        "quality_rows": len(quality),
        "status": {s: int(counts.get(s, 0)) for s in ("Normal", "Alerta", "Anormal")},
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "target_seconds": round(sum(times[s] for s in TARGET_STEPS), 3),
        # Peak RSS of the process once limits, classification and status are done (before quality).
        "peak_rss_target_mb": round(rss_target, 1),
    }


def silver_file(n: int, seed: int, out_dir: Path) -> Path:
    return out_dir / f"silver_{n}_s{seed}_g{GENERATOR_VERSION}.parquet"


def ensure_silver(n: int, seed: int, out_dir: Path) -> Path:
    """Generate (in a child process, so the parent stays small) the silver file of one size."""
    path = silver_file(n, seed, out_dir)
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        child = run_child(
            ["bench/scale.py", "generate", "--n", str(n), "--seed", str(seed), "--out", str(path)]
        )
        if child.returncode != 0 or not path.exists():
            raise SystemExit(f"generating {n} samples failed:\n{child.stderr_tail}")
    return path


def run_scale(sizes: list[int], repeat: int, seed: int = 7, out_dir: Path | None = None) -> dict:
    """Measure every size ``repeat`` times, each in a fresh child process."""
    out_dir = out_dir or OUT / "scale"
    rows = []
    for n in sizes:
        path = ensure_silver(n, seed, out_dir)
        runs = []
        for _ in range(repeat):
            child = run_child(["bench/scale.py", "measure", "--silver", str(path)])
            if child.returncode != 0:
                raise SystemExit(f"measuring {n} samples failed:\n{child.stderr_tail}")
            runs.append({**child.result, "peak_rss_mb": child.peak_rss_mb, "process_wall_s": child.wall_s})
        rows.append(
            {
                "samples": n,
                "units": runs[0]["units"],
                "limit_rows": runs[0]["limit_rows"],
                "status": runs[0]["status"],
                "steps": {s: spread([r["seconds"][s] for r in runs]) for s in ("load_silver", *STEPS)},
                "target": spread([r["target_seconds"] for r in runs]),
                "with_quality": spread([r["target_seconds"] + r["seconds"]["quality"] for r in runs]),
                "peak_rss_mb": spread([r["peak_rss_mb"] for r in runs]),
                "peak_rss_target_mb": spread([r["peak_rss_target_mb"] for r in runs]),
                "runs": runs,
            }
        )
    ns = [r["samples"] for r in rows]
    exponents = {
        "target": loglog_slope(ns, [r["target"]["median"] for r in rows]),
        "with_quality": loglog_slope(ns, [r["with_quality"]["median"] for r in rows]),
        **{s: loglog_slope(ns, [r["steps"][s]["median"] for r in rows]) for s in STEPS},
        "peak_rss": loglog_slope(ns, [r["peak_rss_mb"]["median"] for r in rows]),
    }
    big = [r for r in rows if r["samples"] >= 100_000]
    if len(big) >= 2:  # the upper sizes only: fixed costs weigh on the smallest size
        bn = [r["samples"] for r in big]
        exponents["target_from_100k"] = loglog_slope(bn, [r["target"]["median"] for r in big])
    return {"sizes": rows, "exponents": exponents, "repeat": repeat, "seed": seed}


def _target_rss(row: dict) -> dict:
    return row.get("peak_rss_target_mb") or spread([r["peak_rss_target_mb"] for r in row["runs"]])


def scale_table(doc: dict) -> str:
    header = [
        "samples",
        "units",
        "limits",
        "classify",
        "machine status",
        "**limits + classify + status**",
        "quality",
        "peak RSS: limits + classify + status",
        "peak RSS: process (with quality)",
    ]
    rows = []
    for r in doc["sizes"]:
        st = r["steps"]
        rows.append(
            [
                f"{r['samples']:,}",
                str(r["units"]),
                fmt_spread(st["limits"]),
                fmt_spread(st["classify"]),
                fmt_spread(st["machine_status"]),
                f"**{fmt_spread(r['target'])}**",
                fmt_spread(st["quality"]),
                fmt_spread(_target_rss(r), "MB", 0),
                fmt_spread(r["peak_rss_mb"], "MB", 0),
            ]
        )
    e = doc["exponents"]
    sizes = ", ".join(f"{r['samples']:,}" for r in doc["sizes"])
    tail = (
        f"\nGrowth exponent (log-log slope over {sizes} samples): "
        f"limits + classify + status {e['target']:.2f}"
        + (f" ({e['target_from_100k']:.2f} from 100 k up)" if "target_from_100k" in e else "")
        + f"; limits {e['limits']:.2f}, classify {e['classify']:.2f}, machine status "
        f"{e['machine_status']:.2f}, quality {e['quality']:.2f}; peak RSS {e['peak_rss']:.2f}."
    )
    return markdown_table(header, rows) + "\n" + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", nargs="?", default="run", choices=["run", "generate", "measure"])
    ap.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n", type=int)
    ap.add_argument("--out")
    ap.add_argument("--silver")
    ap.add_argument("--out-dir", default=str(OUT / "scale"))
    ap.add_argument("--json", help="write the results here (run)")
    ap.add_argument("--result", help=argparse.SUPPRESS)  # a child's result file (bench/common.py)
    a = ap.parse_args(argv)
    if a.cmd == "generate":
        t = time.perf_counter()
        df = generate_silver(a.n, a.seed)
        df.to_parquet(a.out, index=False)
        write_result(a.result, {"samples": len(df), "seconds": round(time.perf_counter() - t, 2)})
        return 0
    if a.cmd == "measure":
        write_result(a.result, measure(a.silver))
        return 0
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    doc = {"machine": machine_info(), **run_scale(sizes, a.repeat, a.seed, Path(a.out_dir))}
    print(scale_table(doc))
    if a.json:
        import json

        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(doc, indent=2, default=str))
    write_result(a.result, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

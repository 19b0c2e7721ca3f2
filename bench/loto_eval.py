"""Leave-one-truck-out (LOTO) agreement of the classification with the lab verdict.

For every truck in the Finning folder: limits are computed on the *other* trucks only, the held-out
truck is classified with them, and its reports are scored against the lab's verdict (``Estado``)
with the same figures as ``../shared/tools/eval_vs_lab.py``. The product's own reader, harmonizer,
limits and classifier are used; the reference method (v2.0 rules, DOMAIN.md §3.1/§4.1/§4.2) is
run the same way. Two context rows follow: "in-sample" (limits on every truck, as production does
on the client's whole history) and "time split" (limits on every truck's samples before
``--split-date``, classify the samples from that date on).

    uv run python bench/loto_eval.py [--data-dir ../shared/data/finning] [--json out.json]
                                     [--write-classified bench/out] [--sensitivity]

``--sensitivity`` adds LOTO means of one-at-a-time variations of the main parameters, to show how
much the figures depend on each choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import os
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oil_analysis.domain.catalog import load_catalog  # noqa: E402
from oil_analysis.domain.classify import (  # noqa: E402
    REFERENCE_V2_CLASSIFICATION,
    ClassificationParams,
    classify_reports,
)
from oil_analysis.domain.harmonize import harmonize  # noqa: E402
from oil_analysis.domain.labs.finning import read_finning_workbook  # noqa: E402
from oil_analysis.domain.limits import REFERENCE_V2_LIMITS, LimitParams, compute_limits  # noqa: E402
from oil_analysis.domain.quality import agreement  # noqa: E402

METHODS = {
    "ours": (LimitParams(), ClassificationParams()),
    "reference_v2": (REFERENCE_V2_LIMITS, REFERENCE_V2_CLASSIFICATION),
}
FIGURES = [
    "roc_auc_action",
    "spearman",
    "flag_rate",
    "recall",
    "precision",
    "anormal_rate",
    "anormal_precision",
]
HEAD = ["AUC", "Spearman", "flag", "recall", "prec", "Anormal", "Anormal P"]


def load_silver(data_dir: str) -> pd.DataFrame:
    files = sorted(glob.glob(os.path.join(data_dir, "*.xlsx")))
    if not files:
        raise SystemExit(f"no .xlsx files in {data_dir}")
    silver, _, _ = harmonize(
        [read_finning_workbook(f).samples for f in files], "CDA", as_of=pd.Timestamp("2100-01-01")
    )
    return silver


def evaluate(
    silver: pd.DataFrame,
    limit_params: LimitParams,
    params: ClassificationParams,
    out_dir: str | None = None,
    name: str = "",
    split_date: str = "2024-01-01",
) -> dict:
    catalog = load_catalog()
    folds, held_out = {}, []
    for unit in sorted(silver["unitId"].dropna().unique()):
        train = silver[silver["unitId"] != unit]
        test = silver[silver["unitId"] == unit].reset_index(drop=True)
        limits = compute_limits(train, catalog, limit_params)
        classified = classify_reports(test, limits, catalog, params)
        folds[str(unit)] = agreement(classified)
        held_out.append(classified)
    pooled = pd.concat(held_out, ignore_index=True)
    limits_all = compute_limits(silver, catalog, limit_params)
    in_sample = classify_reports(silver, limits_all, catalog, params)
    cut = pd.Timestamp(split_date)
    before = silver[silver["sampleDate"] < cut]
    after = silver[silver["sampleDate"] >= cut].reset_index(drop=True)
    time_split = classify_reports(after, compute_limits(before, catalog, limit_params), catalog, params)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        cols = [
            "sampleNumber",
            "unitId",
            "componentName",
            "severity_score",
            "report_status",
            "breached_essays",
        ]
        pooled[cols].to_parquet(os.path.join(out_dir, f"loto_{name}.parquet"), index=False)
        in_sample[cols].to_parquet(os.path.join(out_dir, f"insample_{name}.parquet"), index=False)
    mean = {f: float(pd.Series([folds[u][f] for u in folds]).mean()) for f in FIGURES}
    return {
        "folds": folds,
        "mean": mean,
        "pooled": agreement(pooled),
        "in_sample": agreement(in_sample),
        "time_split": agreement(time_split),
    }


def sensitivity(silver: pd.DataFrame) -> dict:
    """LOTO means of one-at-a-time variations of the main parameters."""
    lp, cp = LimitParams(), ClassificationParams()
    weights = dict(cp.group_weights)

    def gw(**kw):
        return tuple({**weights, **kw}.items())

    variants = {
        "default": (lp, cp),
        "inclusive comparison": (dataclasses.replace(lp, comparison="inclusive"), cp),
        "zeros excluded": (dataclasses.replace(lp, exclude_zeros=True), cp),
        "no oil-age limits (hours)": (dataclasses.replace(lp, hours_bins=0), cp),
        "oil-age bins 3": (dataclasses.replace(lp, hours_bins=3), cp),
        "oil-age bins 5": (dataclasses.replace(lp, hours_bins=5), cp),
        "oil-age rho >= 0.5": (dataclasses.replace(lp, hours_min_correlation=0.5), cp),
        "oil-age on every essay (rho 0)": (dataclasses.replace(lp, hours_min_correlation=-1.0), cp),
        "no contaminant corroboration": (lp, dataclasses.replace(cp, corroboration=())),
        "corroboration incl. visual": (
            lp,
            dataclasses.replace(cp, corroboration=(("contaminant", ("wear", "particle", "visual")),)),
        ),
        "previous method (no hours, no corrob.)": (
            dataclasses.replace(lp, hours_bins=0),
            dataclasses.replace(cp, corroboration=()),
        ),
        "oil-hour strata": (dataclasses.replace(lp, oil_hour_strata=True), cp),
        "viscosity percentiles": (dataclasses.replace(lp, relative_bands=()), cp),
        "viscosity band 5/10/20 %": (
            dataclasses.replace(lp, relative_bands=(("visc_100c", (0.05, 0.10, 0.20)),)),
            cp,
        ),
        "no trend": (lp, dataclasses.replace(cp, trend_weight=0.0)),
        "trend weight 1": (lp, dataclasses.replace(cp, trend_weight=1.0)),
        "no secondary factor": (lp, dataclasses.replace(cp, secondary_factor=1.0)),
        "points 1/2/4": (lp, dataclasses.replace(cp, level_points=(1.0, 2.0, 4.0))),
        "points 1/3/9": (lp, dataclasses.replace(cp, level_points=(1.0, 3.0, 9.0))),
        "flag weight 1": (lp, dataclasses.replace(cp, group_weights=gw(flag=1.0))),
        "contaminant weight 1": (lp, dataclasses.replace(cp, group_weights=gw(contaminant=1.0))),
        "additive weight 1": (lp, dataclasses.replace(cp, group_weights=gw(additive=1.0))),
        "all weights 1": (
            lp,
            dataclasses.replace(cp, group_weights=tuple((g, 1.0) for g in weights), essay_weights=()),
        ),
        "cuts 3 / 9": (lp, dataclasses.replace(cp, alerta_cut=3.0, anormal_cut=9.0)),
        "cuts 5 / 12": (lp, dataclasses.replace(cp, alerta_cut=5.0, anormal_cut=12.0)),
    }
    out = {}
    for name, (a, b) in variants.items():
        r = evaluate(silver, a, b)
        out[name] = {
            **r["mean"],
            "worst_fold_auc": min(f["roc_auc_action"] for f in r["folds"].values()),
            "worst_fold_recall": min(f["recall"] for f in r["folds"].values()),
            "time_auc": r["time_split"]["roc_auc_action"],
            "time_spearman": r["time_split"]["spearman"],
        }
    return out


def _fmt(v) -> str:
    return "   nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"


def print_table(results: dict) -> None:
    print(f"{'method':14s} {'fold':10s} " + " ".join(f"{h:>9s}" for h in HEAD) + "   n  action")
    for method, res in results.items():
        rows = [(u, f) for u, f in res["folds"].items()]
        rows += [
            ("mean", res["mean"]),
            ("pooled", res["pooled"]),
            ("in-sample", res["in_sample"]),
            ("time split", res["time_split"]),
        ]
        for label, fig in rows:
            n = f"{fig['n']:5d} {fig['n_action']:5d}" if "n" in fig else ""
            print(f"{method:14s} {label:10s} " + " ".join(f"{_fmt(fig[f]):>9s}" for f in FIGURES) + "  " + n)
        print()


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_clean(v) for v in o]
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    return o


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "finning"))
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--split-date", default="2024-01-01", help="date of the time-split context row")
    ap.add_argument(
        "--sensitivity", action="store_true", help="also print one-at-a-time parameter variations"
    )
    ap.add_argument(
        "--write-classified",
        default=None,
        help="folder for the held-out classified reports (to cross-check with eval_vs_lab.py)",
    )
    a = ap.parse_args(argv)
    t0 = time.time()
    silver = load_silver(a.data_dir)
    results = {
        name: evaluate(silver, lp, cp, a.write_classified, name, a.split_date)
        for name, (lp, cp) in METHODS.items()
    }
    print(f"{len(silver)} samples, {silver['unitId'].nunique()} trucks, {time.time() - t0:.1f} s\n")
    print_table(results)
    sens = None
    if a.sensitivity:
        sens = sensitivity(silver)
        print("LOTO mean of one-at-a-time variations")
        extra = ["worst_fold_auc", "worst_fold_recall", "time_auc", "time_spearman"]
        print(
            f"{'variant':40s} "
            + " ".join(f"{h:>9s}" for h in HEAD)
            + " ".join(f"{h:>9s}" for h in ["worstAUC", "worstRec", "time AUC", "time Sp"])
        )
        for name, fig in sens.items():
            print(f"{name:40s} " + " ".join(f"{_fmt(fig[f]):>9s}" for f in FIGURES + extra))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(
                _clean(
                    {
                        "samples": len(silver),
                        "params": {
                            n: {"limits": lp.as_dict(), "classification": cp.as_dict()}
                            for n, (lp, cp) in METHODS.items()
                        },
                        "results": results,
                        "sensitivity": sens,
                    }
                ),
                f,
                indent=2,
                default=str,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Do our explanations name the causes the lab's expert names? Leave-one-truck-out.

For every truck of the Finning folder, limits come from the *other* trucks only and the held-out
truck is classified with them (as ``bench/loto_eval.py``). On the samples the lab asked to act on
(``Estado`` = "Acción requerida" or "Se requiere acción urgente"):

* **lab causes**: the causes tagged in the lab's ``Interpretacion`` (``labComment``) by
  :func:`tag_lab_comment` — findings only: the comment is split into its "/" segments, segments that
  are instructions (CHEQUEAR, REVISAR, CAMBIAR…) or say "normal" / "aceptable" are dropped, text
  after "impide realizar" / "no se realiza" is dropped (water *prevents* the viscosity and particle
  tests: they are not findings), silicon put down to a sealant or to sampling is not dust;
* **our causes**: the causes of the findings our recommendation names
  (:func:`oil_analysis.domain.advice.offline.explained_causes`, from the breaches and the report's
  own fields), whatever the status (a Normal report's breaches are what we would say).

Recall = matched lab causes / lab causes; precision = matched causes of ours / causes of ours
(micro-averaged over the samples; a sample whose comment names no cause is skipped), per held-out
truck, their mean and pooled.

    uv run python bench/cause_eval.py [--data-dir ../shared/data/finning] [--json out.json] [--show N]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loto_eval import load_silver  # noqa: E402

from oil_analysis.domain.advice.causes import CAUSES  # noqa: E402
from oil_analysis.domain.advice.offline import explained_causes  # noqa: E402
from oil_analysis.domain.catalog import load_catalog  # noqa: E402
from oil_analysis.domain.classify import ClassificationParams, classify_reports  # noqa: E402
from oil_analysis.domain.limits import LimitParams, compute_limits  # noqa: E402

ACTION = ("Acción requerida", "Se requiere acción urgente")

# A segment that starts with one of these words is an instruction, not a finding.
INSTRUCTIONS = [
    "CHEQUEAR",
    "CONTROLAR",
    "CONTOLAR",
    "ENVIAR",
    "MANTENER",
    "VERIFICAR",
    "REVISAR",
    "MONITOREAR",
    "EVALUAR",
    "EVALUE",
    "SEGUIMIENTO",
    "EXAMINAR",
    "CONSIDERAR",
    "CONSIDERE",
    "INSPECCIONAR",
    "INSPECIONAR",
    "CORROBORAR",
    "REALIZAR",
    "CAMBIAR",
    "CAMBIE",
    "ATENDER",
    "DIALIZAR",
    "SEGUIDO",
    "SEGUIDAS",
    "CONFIRMAR",
    "INFORMAR",
    "EVITAR",
    "INVESTIGAR",
    "OBTENER",
    "REFORZAR",
    "CONTINUAR",
    "TENER",
    "CORREGIR",
    "PRESURIZAR",
    "REVISAR-EVALUAR",
    "COMO",
    "A",
    "O",
    "Y",
    "E",
    "REDUCIR",
    "TOMAR",
    "PROGRAMAR",
    "DRENAR",
    "FILTRAR",
    "LIMPIAR",
]
# "Normal" segments ("DEMAS LECTURAS NORMALES", "OTROS ELEMENTOS EN PARAMETROS ACEPTABLES").
NORMAL = re.compile(r"\b(NORMAL|NORMALES|ACEPTABLE|ACEPTABLES|ESTABLES?)\b")
# What follows these words was not measured.
NOT_DONE = re.compile(r"\b(IMPIDE|IMPIDEN|NO SE REALIZA|NO SE INFORMA|NO SE MIDE|SIN ANALISIS)\b.*")
# Negated presence: "NO SE OBSERVAN PARTICULAS".
NEGATED = re.compile(r"\b(NO SE OBSERVA|NO SE OBSERVAN|SIN PRESENCIA|AUSENCIA)\b")
# Silicon put down to something else than dust.
NOT_DUST = re.compile(r"\b(SELLANTE|SILICONA|MUESTREO)\b")

PATTERNS = {
    "water": r"\bAGUA\b|\bHUMEDAD\b",
    "fuel": r"COMBUSTIBLE|\bDILUCION\b|SOLVENTE",
    "dust": r"\bSILICIO|\bPOLVO\b|\bTIERRA\b",
    "coolant": r"REFRIGERANTE|GLICOL|ANTICONGELANTE",
    "wear": r"DESGASTE|\bHIERRO\b|\bCOBRE\b|\bCROMO\b|\bPLOMO\b|\bESTANO\b|\bNIQUEL\b|\bALUMINIO\b|"
    r"\bMETALES\b|\bFE\b|\bCU\b",
    "viscosity": r"VISCOSIDAD|\bVISC\b",
    "degradation": r"OXIDACION|NITRACION|SULFATACION|HOLLIN|\bTBN\b|DEGRADACION|\bTAN\b",
    "particles": r"\bPQI?\b|PARTICUL|GRANULO|MAGNETIC|\bISO\b|DENSIDAD FERROSA|SUSPENSION|LIMPIEZA|"
    r"CONTADOR",
}
_RE = {k: re.compile(v) for k, v in PATTERNS.items()}


def _fold(text: str) -> str:
    """Upper case without accents: the lab writes both "PARTÍCULAS" and "PARTICULAS"."""
    text = unicodedata.normalize("NFKD", str(text).upper())
    return "".join(c for c in text if not unicodedata.combining(c)).replace("Ñ", "N")


def tag_lab_comment(comment) -> set[str]:
    """The causes the lab's comment names as findings (see the module doc for the negation rules)."""
    if comment is None or (isinstance(comment, float) and pd.isna(comment)):
        return set()
    out: set[str] = set()
    for seg in re.split(r"/", _fold(comment)):
        seg = re.sub(r"[.,;:()]", " ", seg).strip()
        if not seg or seg.split()[0] in INSTRUCTIONS:
            continue
        seg = NOT_DONE.sub("", seg)
        if NORMAL.search(seg) and not re.search(r"\b(ALTO|ALTA|ALTOS|ALTAS|ELEVAD)", seg):
            continue
        if NEGATED.search(seg):
            continue
        for cause, rx in _RE.items():
            if rx.search(seg):
                if cause == "dust" and NOT_DUST.search(seg):
                    continue
                out.add(cause)
    return out


def our_causes(row: dict, catalog) -> set[str]:
    """The causes our recommendation of this report names."""
    return explained_causes(row.get("breached_essays"), row.get("componentName"), catalog, context=row)


def score(rows: list[tuple[set[str], set[str]]]) -> dict:
    """Micro recall and precision over (lab, ours) pairs; pairs with no lab cause are skipped."""
    rows = [(lab, ours) for lab, ours in rows if lab]
    hit_lab = sum(len(lab & ours) for lab, ours in rows)
    n_lab = sum(len(lab) for lab, _ in rows)
    n_ours = sum(len(ours) for _, ours in rows)
    return {
        "samples": len(rows),
        "recall": hit_lab / n_lab if n_lab else float("nan"),
        "precision": hit_lab / n_ours if n_ours else float("nan"),
        "lab_causes": n_lab,
        "our_causes": n_ours,
    }


def per_cause(rows: list[tuple[set[str], set[str]]]) -> dict:
    """Recall and precision per cause (pooled)."""
    out = {}
    for c in CAUSES:
        lab = sum(c in a for a, _ in rows)
        ours = sum(c in b for _, b in rows)
        both = sum(c in a and c in b for a, b in rows)
        out[c] = {"lab": lab, "ours": ours, "both": both}
    return out


def evaluate(silver: pd.DataFrame) -> dict:
    """Leave-one-truck-out cause agreement on the lab's action samples."""
    catalog = load_catalog()
    lp, cp = LimitParams(), ClassificationParams()
    folds, pooled, examples = {}, [], []
    for unit in sorted(silver["unitId"].dropna().unique()):
        train = silver[silver["unitId"] != unit]
        test = silver[silver["unitId"] == unit].reset_index(drop=True)
        classified = classify_reports(test, compute_limits(train, catalog, lp), catalog, cp)
        act = classified[classified["labVerdict"].astype(str).isin(ACTION)]
        rows = []
        for r in act.to_dict("records"):
            lab, ours = tag_lab_comment(r.get("labComment")), our_causes(r, catalog)
            rows.append((lab, ours))
            examples.append(
                {
                    "unit": str(unit),
                    "sample": str(r["sampleNumber"]),
                    "component": str(r["componentName"]),
                    "status": str(r["report_status"]),
                    "lab": sorted(lab),
                    "ours": sorted(ours),
                    "comment": str(r.get("labComment"))[:160],
                }
            )
        folds[str(unit)] = score(rows)
        pooled += rows
    mean = {k: float(pd.Series([f[k] for f in folds.values()]).mean()) for k in ("recall", "precision")}
    return {
        "folds": folds,
        "mean": mean,
        "pooled": score(pooled),
        "per_cause": per_cause([p for p in pooled if p[0]]),
        "examples": examples,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "finning"))
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--show", type=int, default=0, help="print this many disagreeing samples")
    a = ap.parse_args(argv)
    t0 = time.time()
    silver = load_silver(a.data_dir)
    res = evaluate(silver)
    print(f"{len(silver)} samples, {silver['unitId'].nunique()} trucks, {time.time() - t0:.1f} s")
    print(f"{'fold':10s} {'samples':>8s} {'recall':>8s} {'precision':>10s} {'lab':>5s} {'ours':>5s}")
    for name, f in [*res["folds"].items(), ("pooled", res["pooled"])]:
        print(
            f"{name:10s} {f['samples']:8d} {f['recall']:8.3f} {f['precision']:10.3f} "
            f"{f['lab_causes']:5d} {f['our_causes']:5d}"
        )
    print(f"{'mean':10s} {'':8s} {res['mean']['recall']:8.3f} {res['mean']['precision']:10.3f}")
    print("\nper cause (pooled): lab / ours / both")
    for c, v in res["per_cause"].items():
        print(f"  {c:12s} {v['lab']:4d} {v['ours']:4d} {v['both']:4d}")
    if a.show:
        bad = [e for e in res["examples"] if set(e["lab"]) != set(e["ours"])]
        print(f"\n{len(bad)} samples where the causes differ; first {a.show}:")
        for e in bad[: a.show]:
            print(json.dumps(e, ensure_ascii=False))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    counts = Counter(len(e["lab"]) for e in res["examples"])
    print(f"\nlab causes per action sample: {dict(sorted(counts.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Name normalization: units, machine types and components.

One rule, versioned as data (DOMAIN.md §2.2 asks to pin exactly one):

* ``componentName`` = the lab's compartment name folded (accents removed, lower case, single
  spaces). It keeps position words: it identifies the physical compartment of a unit.
* ``componentNameNormalized`` = the limit grouping key: side words (izquierdo/derecho, LH/RH,
  left/right, #1/#2) are removed from ``componentName``, then the seed table
  ``reference/component_groups.csv`` maps synonyms (``sistema hidraulico`` → ``hidraulico``).
  Names not in the table pass through unchanged. Front/rear words are kept: a front wheel and a
  rear final drive are different compartments. No substring grouping (the reference's
  ``eje``/``cubo``/``aceite`` substring rule lumped unrelated compartments together).
* ``machineName`` = the machine type: the lab's family name or, when the lab gives only a model
  (Finning), the model matched against ``reference/machine_types.csv``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_SIDE_WORDS = re.compile(
    r"\b(izquierd[oa]s?|derech[oa]s?|izq|der|lh|rh|left|right)\b|#\s*[12]\b", flags=re.IGNORECASE
)


def fold(text: str) -> str:
    """Accent-free, lower-case, single-spaced text."""
    t = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return " ".join(t.lower().split())


def by_value(values: pd.Series, rule, *, trimmed: bool = False) -> pd.Series:
    """``rule`` (text → text or NA) on a column through its distinct texts (columns repeat a
    handful of names): dictionary-encoded once, the rule on each distinct text, taken back; missing
    stays missing. ``trimmed``: each text has its whitespace trimmed at both ends first (pandas'
    ``str.strip``, the same Arrow kernel). A ``string`` column with the index and name of ``values``."""
    s = values.astype("string")
    coded = pc.dictionary_encode(pa.array(s.array))
    if isinstance(coded, pa.ChunkedArray):
        coded = coded.combine_chunks()
    texts = pc.utf8_trim_whitespace(coded.dictionary) if trimmed else coded.dictionary
    out = pd.array([rule(t) for t in texts.to_pylist()], dtype="string")
    codes = coded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)
    return pd.Series(out.take(codes, allow_fill=True), index=s.index, name=s.name)


def _fold_series(values: pd.Series) -> pd.Series:
    """``fold`` on a column through its unique values."""
    return by_value(values, fold)


@cache
def _reference_bytes(name: str) -> bytes:
    return resources.files("oil_analysis.reference").joinpath(name).read_bytes()


@cache
def component_groups() -> dict[str, str]:
    table = pd.read_csv(resources.files("oil_analysis.reference").joinpath("component_groups.csv").open("rb"))
    return {fold(a): fold(b) for a, b in zip(table["cleaned_name"], table["component_group"], strict=True)}


@cache
def machine_types() -> tuple[dict[str, str], list[tuple[re.Pattern, str]]]:
    table = pd.read_csv(resources.files("oil_analysis.reference").joinpath("machine_types.csv").open("rb"))
    family = {fold(p): m for k, p, m in table.itertuples(index=False) if k == "family"}
    models = [(re.compile(p, re.IGNORECASE), m) for k, p, m in table.itertuples(index=False) if k == "model"]
    return family, models


def mapping_version() -> str:
    """Hash of the name-mapping tables and of this module's rule version."""
    h = hashlib.sha256(b"names-rule-v1")
    for f in ("component_groups.csv", "machine_types.csv"):
        h.update(_reference_bytes(f))
    return "names-" + h.hexdigest()[:12]


def normalize_component(component_name: str) -> str:
    """Limit grouping key of one (already folded) component name."""
    stripped = " ".join(_SIDE_WORDS.sub(" ", fold(component_name)).split())
    stripped = stripped or fold(component_name)
    return component_groups().get(stripped, stripped)


def component_columns(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``(componentName, componentNameNormalized)`` for a column of raw compartment names."""
    name = _fold_series(raw)
    return name, by_value(name, normalize_component)


def machine_name(family: pd.Series, model: pd.Series) -> pd.Series:
    """Machine type from the family name when present, else from the model."""
    fam_map, model_rules = machine_types()

    def from_family(f: str) -> str:
        folded = fold(f)
        return fam_map.get(folded, folded)

    def from_model(m: str):
        folded = fold(m)
        for rule, name in model_rules:
            if rule.search(folded):
                return name
        return pd.NA

    fam = by_value(family, from_family)
    return fam.fillna(by_value(model, from_model)).fillna("desconocido")


def unit_ids(raw: pd.Series) -> pd.Series:
    """Unit ids upper-cased with ``-`` and spaces as ``_`` (``t-09`` → ``T_09``)."""
    # Through the unique values (a workbook holds one unit): the same string rules per value.
    s = raw.astype("string")
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    ids = pd.Series(uniq, dtype=s.dtype).str.strip().str.upper().str.replace(r"[\s\-]+", "_", regex=True)
    return pd.Series(ids.array.take(codes, allow_fill=True), index=s.index, name=s.name)


def brands(raw: pd.Series) -> pd.Series:
    """Brand names folded; Cat spellings become ``caterpillar``."""
    b = _fold_series(raw)
    return b.mask(b.isin(["cat", "caterpillar", "caterpillar inc", "cat inc"]), "caterpillar")

"""The mixed particle field of lab exports (Finning's ``ISO`` column).

The field holds either an ISO 4406 cleanliness code (``22/19/14``: three scale numbers for
particles > 4, > 6 and > 14 µm) or a visual / patch code made of ``/``-separated tokens:

* ``S-M``   suspension, magnetic (level 1 when no digit is given)
* ``G-NM1`` granular, non-magnetic, level 1; ``G-M2`` granular magnetic level 2
* ``P-NM1`` ``P-M1`` ``T-NM`` other particle kinds, same pattern
* ``O``     other / oxides (recorded, no level)
* ``H2O``   the count was prevented by water; ``H2O/E`` (also ``/T``, ``/P``) adds the water level
  the lab saw (the letters of the W flag: trace, positive, excessive). Kept as ``H2O/E`` with
  ``countPreventedByWater`` true: in the real data such a sample's comment says *ATENDER URGENTE*.
* ``N``     the patch was examined and showed no particles (the lab's ``N`` = none, as in its
  W/A/F flags): debris levels 0, no ISO count. (Seen on a sample whose comment says *HIERRO ALTO*:
  the element readings carry that finding, the patch does not.)

Typos seen in real files (``G/NM1``, ``GNM-1``, ``G-NM1 / O``) are folded into the same tokens.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

from .common import by_value, excel_error, not_determined

_ISO = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{1,2})\s*/\s*(\d{1,2})\s*$")
_TOKEN = re.compile(r"^([A-Z])-?(N?M)-?(\d?)$")
WATER_LEVELS = ("T", "P", "E")  # the W flag letters that may qualify an ``H2O`` code

PARTICLE_PROBLEM = "expected an ISO 4406 code like 22/19/14 or a visual code like S-M"
PARTICLE_COLUMNS = [
    "isoCode",
    "particleCode",
    "iso_4um",
    "iso_6um",
    "iso_14um",
    "debris_magnetic",
    "debris_nonmagnetic",
    "countPreventedByWater",
]


@lru_cache(maxsize=4096)
def parse_particle_field(value: str) -> tuple:
    """Parse one field value. Returns a tuple in the order of ``PARTICLE_COLUMNS``.

    Raises ``ValueError`` for text that is neither an ISO code nor a visual code.
    """
    text = " ".join(str(value).upper().split())
    m = _ISO.match(text)
    if m:
        codes = tuple(float(x) for x in m.groups())
        return (f"{m.group(1)}/{m.group(2)}/{m.group(3)}", None, *codes, np.nan, np.nan, False)
    tokens, magnetic, nonmagnetic, water = [], 0.0, 0.0, False
    # "G/NM1" is a typo of "G-NM1": join a lone kind letter to the next token before splitting.
    text = re.sub(r"\b([A-Z])\s*/\s*(N?M\d?)\b", r"\1-\2", text)
    for raw in text.split("/"):
        token = raw.strip().replace(" ", "")
        if not token:
            continue
        if token == "H2O":
            water = True
            tokens.append("H2O")
            continue
        if token in ("O", "N"):
            tokens.append(token)
            continue
        if token in WATER_LEVELS and water:
            at = tokens.index("H2O")
            tokens[at] = f"H2O/{token}"
            continue
        token = token.replace("GNM-", "G-NM").replace("GM-", "G-M")
        t = _TOKEN.match(token)
        if not t:
            raise ValueError(f"unknown particle code {value!r} (token {raw.strip()!r})")
        kind, mag, level = t.group(1), t.group(2), float(t.group(3) or 1)
        tokens.append(f"{kind}-{mag}{t.group(3)}")
        if mag == "M":
            magnetic = max(magnetic, level)
        else:
            nonmagnetic = max(nonmagnetic, level)
    if not tokens:
        raise ValueError(f"empty particle code {value!r}")
    if all(t.startswith("H2O") for t in tokens):
        magnetic = nonmagnetic = np.nan  # water prevented the patch reading too: no level known
    return (None, "/".join(tokens), np.nan, np.nan, np.nan, magnetic, nonmagnetic, water)


def _particle_cell(v) -> tuple[tuple, str | None]:
    """One cell → ``(row of PARTICLE_COLUMNS values, problem or None)``."""
    if not_determined(v):
        return _EMPTY, None
    u = str(v).strip()
    if not u:
        return _EMPTY, None
    try:
        return parse_particle_field(u), None
    except ValueError:
        err = excel_error(u)
        return _EMPTY, f"Excel error cell {err}" if err else PARTICLE_PROBLEM


_EMPTY = (None, None, np.nan, np.nan, np.nan, np.nan, np.nan, False)


def parse_particle_column(values: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """Parse a whole column (once per distinct text). Returns ``(frame, problem)``.

    ``frame`` has ``PARTICLE_COLUMNS``; ``problem`` is None for good or empty cells (including the
    "not determined" markers) and the reason for cells that could not be parsed (they are cleared).
    """
    pairs = by_value(values.to_numpy(dtype=object), _particle_cell)
    rows = [p[0] for p in pairs]
    bad = np.empty(len(pairs), dtype=object)
    bad[:] = [p[1] for p in pairs]
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(PARTICLE_COLUMNS)
    out = pd.DataFrame(
        {
            c: pd.array(list(v), dtype="string")
            if c in ("isoCode", "particleCode")
            else np.array(v, dtype=bool if c == "countPreventedByWater" else float)
            for c, v in zip(PARTICLE_COLUMNS, cols, strict=True)
        },
        index=values.index,
    )
    return out, pd.Series(bad, index=values.index, dtype=object)

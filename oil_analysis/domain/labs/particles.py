"""The mixed particle field of lab exports (Finning's ``ISO`` column).

The field holds either an ISO 4406 cleanliness code (``22/19/14``: three scale numbers for
particles > 4, > 6 and > 14 µm) or a visual / patch code made of ``/``-separated tokens:

* ``S-M``   suspension, magnetic (level 1 when no digit is given)
* ``G-NM1`` granular, non-magnetic, level 1; ``G-M2`` granular magnetic level 2
* ``P-NM1`` ``P-M1`` ``T-NM`` other particle kinds, same pattern
* ``O``     other / oxides (recorded, no level)
* ``H2O``   the count was prevented by water

Typos seen in real files (``G/NM1``, ``GNM-1``, ``G-NM1 / O``) are folded into the same tokens.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

_ISO = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{1,2})\s*/\s*(\d{1,2})\s*$")
_TOKEN = re.compile(r"^([A-Z])-?(N?M)-?(\d?)$")

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
        if token == "O":
            tokens.append("O")
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
    return (None, "/".join(tokens), np.nan, np.nan, np.nan, magnetic, nonmagnetic, water)


def parse_particle_column(values: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """Parse a whole column (via its unique values). Returns ``(frame, bad)``.

    ``frame`` has ``PARTICLE_COLUMNS``; ``bad`` marks cells that could not be parsed.
    """
    text = values.astype("string").str.strip()
    present = (text.notna() & (text != "")).to_numpy(dtype=bool, na_value=False)
    n = len(values)
    empty = (None, None, np.nan, np.nan, np.nan, np.nan, np.nan, False)
    parsed: dict[str, tuple | None] = {}
    rows = []
    bad = np.zeros(n, dtype=bool)
    for i, (u, here) in enumerate(zip(text.to_numpy(dtype=object, na_value=None), present, strict=True)):
        if not here:
            rows.append(empty)
            continue
        if u not in parsed:
            try:
                parsed[u] = parse_particle_field(u)
            except ValueError:
                parsed[u] = None
        row = parsed[u]
        if row is None:
            bad[i] = True
            row = empty
        rows.append(row)
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
    return out, pd.Series(bad, index=values.index)

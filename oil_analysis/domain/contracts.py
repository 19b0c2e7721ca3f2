"""Data contracts: every silver and gold table's columns, types and meaning, defined once.

``docs/DATA_CONTRACTS.md`` is generated from this module (``python -m oil_analysis.domain.contracts``) and a
test fails when the two differ. Assets validate their output against these schemas before writing.
Evolution is additive only: ``contracts_snapshot.json`` holds the last published contract and a test
fails on a removed or retyped column.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources

import pandas as pd
import pyarrow as pa

from .catalog import load_catalog

SCHEMA_VERSION = "1.0.0"

S, F, I64, B, TS = pa.string(), pa.float64(), pa.int64(), pa.bool_(), pa.timestamp("us")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    nullable: bool = True


@cache
def _essay_columns() -> list[Column]:
    cat = load_catalog().table
    return [
        Column(
            e,
            F,
            f"Essay **{r.name_es}** ({r.name_en}), {r.unit}; group {r.group}, limit direction "
            f"{r.direction}, method {r.limit_method}.",
        )
        for e, r in cat.iterrows()
    ]


SILVER_META = [
    Column("client", S, "Client key in upper case (`CDA`).", False),
    Column("sampleNumber", S, "Lab sample number; unique per client (the key).", False),
    Column(
        "sampleDate",
        TS,
        "Sampling date, local site date (naive, midnight). Never null, never in the future.",
        False,
    ),
    Column("labDate", TS, "Date the sample entered the lab."),
    Column("reportDate", TS, "Date of the lab report."),
    Column("site", S, "Site name as the lab reports it."),
    Column("unitId", S, "Unit (machine) id, upper case, `-`/spaces as `_` (`T_09`).", False),
    Column(
        "machineName",
        S,
        "Machine type (`camion`, `excavadora`...) from `reference/machine_types.csv`.",
        False,
    ),
    Column("machineModel", S, "Machine model, upper case."),
    Column("machineBrand", S, "Brand, folded (`caterpillar`)."),
    Column("machineSerialNumber", S, "Machine serial number."),
    Column("machineHours", F, "Machine hour meter at sampling."),
    Column(
        "componentName", S, "Compartment name folded (no accents, lower case); keeps position words.", False
    ),
    Column(
        "componentNameNormalized",
        S,
        "Limit grouping key: side words removed, synonyms mapped (`reference/component_groups.csv`).",
        False,
    ),
    Column("componentSerialNumber", S, "Component serial number."),
    Column("componentHours", F, "Component hour meter."),
    Column("oilMeter", F, "Hours on the oil at sampling."),
    Column("oilHourRange", S, "`LT_1000` / `GE_1000` / `UNKNOWN` (oilMeter null).", False),
    Column("oilBrand", S, "Oil brand, trimmed."),
    Column("oilType", S, "Oil product, trimmed."),
    Column("oilWeight", S, "Oil grade as text (`15W-40`, `60`)."),
    Column("oilChanged", B, "The lab form says the oil was changed at sampling (null: unknown)."),
    Column("isoCode", S, "ISO 4406 code `a/b/c` when the lab's particle field holds one."),
    Column(
        "particleCode", S, "Normalized visual/patch particle code (`S-M`, `G-NM1`, `H2O`...) when present."
    ),
    Column("countPreventedByWater", B, "The particle count was prevented by water (code `H2O`).", False),
    Column("censoredEssays", S, "JSON `{essay: '<' | '>'}` of censored readings kept as their bound."),
    Column("labVerdict", S, "The lab's own verdict text (Finning `Estado`)."),
    Column("labComment", S, "The lab's free-text interpretation (never sent to the LLM)."),
    Column("sourceFile", S, "Raw file the row came from (path under the data root).", False),
    Column("sourceRow", I64, "Row of the raw file (Excel row number; 1-based record for parquet).", False),
    Column(
        "cellsCleared",
        I64,
        "Cells of this sample that held an unusable value (text in a number column, an Excel error, an "
        "unknown code, a non-finite or physically impossible number, disagreeing copies, a wrong report "
        "date) and were cleared: the sample is kept without them, each is a `cell cleared` row of the "
        "reject ledger. 0: the sample is complete as the lab sent it; > 0: a report rests on incomplete data.",
        False,
    ),
]
SILVER_LINKS = [
    Column(
        "previousSampleNumber", S, "Previous sample of the same unit and componentName (null for the first)."
    ),
    Column("previousSampleDate", TS, "Its sampling date."),
    Column("daysSincePrevious", I64, "Days since the previous sample (null for the first)."),
]
LIMITS = [
    Column("client", S, "Client key.", False),
    Column("machine", S, "machineName.", False),
    Column("component", S, "componentNameNormalized.", False),
    Column(
        "stratum",
        S,
        "`ALL`, `LT_1000`/`GE_1000` when stratified, or the oil-hour bin `OH:lo-hi` of `hours` limits.",
        False,
    ),
    Column("essay", S, "Catalog essay key.", False),
    Column("group", S, "Catalog group of the essay.", False),
    Column("limit_method", S, "`percentile`, `relative` (band around the median), `flag` or `code`.", False),
    Column(
        "kind",
        S,
        "`level` (value vs limit), `trend` (change since the previous sample) or `hours` (value vs the limits of its oil-hour bin).",
        False,
    ),
    Column("direction", S, "`upper` (breach above) or `lower` (breach below).", False),
    Column("marginal", F, "Marginal limit (upper: lowest; lower: highest).", False),
    Column("condemning", F, "Condemning limit.", False),
    Column("critical", F, "Critical limit.", False),
    Column("baseline", F, "Group median (the centre of relative bands)."),
    Column("sample_count", I64, "Readings the limit was computed from.", False),
    Column("comparison", S, "`strict` (breach when value > upper / < lower) or `inclusive`.", False),
    Column("version", S, "Limits version: hash of the inputs and parameters.", False),
    Column(
        "computed_at", TS, "Newest sample date in the inputs; no wall clock, so re-runs are identical.", False
    ),
]
CLASSIFICATION = [
    Column(
        "breached_essays",
        S,
        "JSON list of breaches: essay, group, value, limit, level "
        "(marginal/condemning/critical), direction, kind (level/trend), points.",
        False,
    ),
    Column("essays_broken", I64, "Number of breaches.", False),
    Column("wear_essays_broken", I64, "Number of breaches of wear essays.", False),
    Column("severity_score", F, "Sum of the breach points (higher is worse).", False),
    Column("report_status", S, "`Normal` / `Alerta` / `Anormal` from the score cut-offs.", False),
    Column("limits_version", S, "Version of the limits the report was classified with.", False),
]


def _advice(prefix: str, subject: str) -> list[Column]:
    return [
        Column(
            f"{prefix}ai_recommendation", S, f"Maintenance recommendation for the {subject} (Spanish).", False
        ),
        Column(
            f"{prefix}ai_source",
            S,
            "`llm` / `cache` / `fallback` / `offline` / `normal` (docs/ADVISOR.md).",
            False,
        ),
        Column(f"{prefix}ai_model", S, "Model that wrote the text, or `offline-advisor`.", False),
        Column(f"{prefix}ai_prompt_version", S, "Prompt version (`advice-v2-…`) or `offline-v2`.", False),
        Column(
            f"{prefix}ai_generated_at", TS, "When the model answered (UTC); null for offline/normal texts."
        ),
        Column(f"{prefix}ai_error", S, "Error class when the LLM call fell back to the offline advisor."),
        Column(f"{prefix}ai_input_hash", S, "sha256 cache key of the prompt inputs; null for normal texts."),
    ]


MACHINE_STATUS = [
    Column("client", S, "Client key in upper case.", False),
    Column("unitId", S, "Unit id.", False),
    Column("machineName", S, "Machine type."),
    Column("machineModel", S, "Machine model."),
    Column("machine_status", S, "`Normal` / `Alerta` / `Anormal` (see docs/CLASSIFICATION.md).", False),
    Column("machine_score", F, "Machine score (see docs/CLASSIFICATION.md).", False),
    Column("latest_sample_date", TS, "Newest sample date of the unit.", False),
    Column(
        "component_status",
        S,
        "JSON list: latest report per componentName (component, status, "
        "severity_score, sample_date, sampleNumber).",
        False,
    ),
    Column("total_components", I64, "Compartments with at least one report.", False),
    Column("components_normal", I64, "Compartments whose latest report is Normal.", False),
    Column("components_alerta", I64, "... Alerta.", False),
    Column("components_anormal", I64, "... Anormal.", False),
    Column("priority", F, "Sort key: higher is more urgent.", False),
    Column("limits_version", S, "Limits version of the reports.", False),
]
LIMIT_QUALITY = [
    Column("client", S, "Client key in upper case.", False),
    Column("machine", S, "machineName.", False),
    Column("component", S, "componentNameNormalized.", False),
    Column("essay", S, "Catalog essay key.", False),
    Column("direction", S, "`upper` / `lower`.", False),
    Column("kind", S, "`level` / `trend`.", False),
    Column("samples", I64, "Reports of the group.", False),
    Column("measured", I64, "Reports with a reading of the essay.", False),
    Column("share_marginal", F, "Share of measured reports at marginal level.", False),
    Column("share_condemning", F, "... at condemning level.", False),
    Column("share_critical", F, "... at critical level.", False),
    Column("share_breached", F, "Share of measured reports beyond the marginal limit.", False),
]


# The bronze registry: one row per raw file of a client (pipeline/bronze.py), the table of bronze_lab_files.
BRONZE_REGISTRY = [
    Column("key", S, "Raw file path under the data root (`bronze/{client}/…`); the key.", False),
    Column("sha256", S, "SHA-256 of the file's bytes: one content is parsed once.", False),
    Column("size", I64, "File size in bytes."),
    Column("lab_format", S, "Lab format of the client (`finning`, `als`)."),
    Column(
        "status",
        S,
        "`ok` (parsed) or `quarantined` (copied to `bronze/_quarantine/{client}/` with a `.reason.json`).",
        False,
    ),
    Column("rows_parsed", I64, "Samples the reader returned."),
    Column("rows_rejected", I64, "Rows the reader rejected (listed in `silver/rejects/{client}.parquet`)."),
    Column("parse_seconds", F, "Seconds the parse took."),
    Column("reason", S, "Why the file was quarantined; null when it was parsed."),
    Column("parsed_path", S, "Where the parsed table of this content is kept; null when quarantined."),
    Column(
        "mtime_ns",
        I64,
        "Arrival time (ns) when listed: the later of the modification and status-change times, so a "
        "copy that keeps an old modification time counts as new; an untouched file is not read again.",
    ),
    Column("cells_cleared", I64, "Cells the reader cleared (the sample kept without that value)."),
    Column("reader_version", S, "Rules of the readers of the parse; another version means a new parse."),
]


REJECTS = [
    Column(
        "file",
        S,
        "Raw file (path under the data root) the rejected sample or cleared cell comes from.",
        False,
    ),
    Column("sheet", S, "Sheet of the workbook (`OIL`); null for parquet exports and cross-file rules."),
    Column("row", I64, "Excel row number (1-based record number for parquet)."),
    Column(
        "column",
        S,
        "Column of the raw file (`Fe`, `Fecha de Toma de Muestra`, `test 'Hierro'`) or silver column.",
    ),
    Column("value", S, "The value as the lab wrote it (text, at most 200 characters)."),
    Column(
        "reason",
        S,
        "Why, in words (`expected a number; cell cleared, sample kept`, `sample date is empty`...).",
        False,
    ),
    Column(
        "action",
        S,
        "`sample rejected` (an invalid identity: sample number, sample date, unit or component, a "
        "duplicate that lost, or no reading at all) or `cell cleared` (the sample is kept without "
        "that value and counted in its `cellsCleared`).",
        False,
    ),
    Column("sampleNumber", S, "The lab's sample number when it could be read."),
    Column(
        "stage",
        S,
        "`read` (the lab reader), `harmonize` (row rules: dates, physical ranges) or `duplicate` "
        "(a sampleNumber in several rows with different values).",
        False,
    ),
]


def silver_columns() -> list[Column]:
    return SILVER_META + list(_essay_columns()) + SILVER_LINKS


def tables() -> dict[str, tuple[str, list[Column]]]:
    """Table name → (path pattern, columns)."""
    return {
        "bronze_lab_files": ("bronze/_registry/{client}/registry.parquet", BRONZE_REGISTRY),
        "silver_harmonized": ("silver/harmonized/{CLIENT}.parquet", silver_columns()),
        "stewart_limits": ("silver/stewart_limits/{client}/{version}/stewart_limits.parquet", LIMITS),
        "classified_reports": (
            "gold/{client}/classified_reports.parquet",
            silver_columns() + CLASSIFICATION + _advice("", "sample's compartment"),
        ),
        "machine_status_current": (
            "gold/{client}/machine_status_current.parquet",
            MACHINE_STATUS + _advice("machine_", "machine as a whole"),
        ),
        "limit_quality": ("gold/{client}/limit_quality.parquet", LIMIT_QUALITY),
        # The reject ledger: the rejects of every raw file that currently feeds silver, and only those
        # (kept exact by incremental runs); published with silver, in the same commit.
        "silver_rejects": ("silver/rejects/{client}.parquet", REJECTS),
    }


def arrow_schema(table: str) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type, c.nullable) for c in tables()[table][1]])


class ContractError(ValueError):
    """A frame that does not meet its table's contract."""


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Check required columns, types and non-null columns; return the contract's columns in order.

    Extra columns are kept after the contract's (additive evolution); a missing or mistyped column,
    or a null in a non-null column, raises :class:`ContractError` naming them. A frame already in
    that order is returned as it is.
    """
    cols = tables()[table][1]
    missing = [c.name for c in cols if c.name not in df.columns]
    if missing:
        raise ContractError(f"{table}: missing columns {missing}")
    if len(df) == 0:
        # A client with no samples yet: its empty columns carry no values, so giving them the
        # contract's types loses nothing (pandas builds them as object).
        empty = {F: "float64", I64: "int64", B: "bool", TS: "datetime64[us]"}
        cast = {c.name: empty[c.type] for c in cols if c.type in empty and df[c.name].dtype == object}
        if cast:
            attrs = dict(df.attrs)
            df = df.astype(cast)
            df.attrs = attrs
    problems = []
    # Types from the frame's dtypes; a column itself only where a rule reads its values (a
    # non-null column, an object column, a type that is off): a hundred columns per publish.
    dtypes = df.dtypes if df.columns.is_unique else None
    for c in cols:
        held = None if dtypes is not None else df[c.name]
        dtype = dtypes[c.name] if dtypes is not None else held.dtype

        def values(name=c.name, held=held):
            return df[name] if held is None else held

        if not c.nullable and values().hasnans:
            problems.append(f"{c.name} has {int(values().isna().sum())} nulls")
        kind = dtype.kind
        # Each rule evaluated only for its type (and the all-null test only when the type is off).
        if c.type == S:
            # pandas reads the values of a column of kind "O" (objects, categories) and answers
            # from the dtype otherwise; a StringDtype column holds texts whatever its values.
            ok = (
                isinstance(dtype, pd.StringDtype)
                or pd.api.types.is_string_dtype(values() if dtype.kind == "O" else dtype)
                or values().isna().all()
            )
        elif c.type == F:
            ok = kind == "f" or values().isna().all()
        elif c.type == I64:
            ok = kind in "iu"
        elif c.type == B:
            ok = kind == "b" or str(dtype) == "boolean"
        elif c.type == TS:
            ok = kind == "M"
        else:
            ok = True
        if not ok:
            problems.append(f"{c.name} has dtype {dtype}, expected {c.type}")
    if problems:
        raise ContractError(f"{table}: " + "; ".join(problems))
    names = [c.name for c in cols]
    if list(df.columns[: len(names)]) == names:
        return df  # already in the contract's order: the same frame (no copy of a hundred columns)
    return df[names + [c for c in df.columns if c not in names]]


def render_markdown() -> str:
    lines = [
        "# Data contracts",
        "",
        "<!-- Generated by `python -m oil_analysis.domain.contracts`; do not edit by hand. -->",
        "",
        f"Schema version **{SCHEMA_VERSION}**; essay catalog **{load_catalog().version}**. Evolution is "
        "additive only: columns are never removed or retyped (a test compares with "
        "`oil_analysis/reference/contracts_snapshot.json`). Parquet, zstd; one file per client.",
        "",
    ]
    for name, (path, cols) in tables().items():
        lines += [
            f"## {name}",
            "",
            f"`{path}`",
            "",
            "| column | type | null | meaning |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {c.description} |" for c in cols
        ]
        lines.append("")
    return "\n".join(lines)


def snapshot() -> dict:
    return {name: {c.name: str(c.type) for c in cols} for name, (_, cols) in tables().items()}


def load_snapshot() -> dict:
    return json.loads(
        resources.files("oil_analysis.reference").joinpath("contracts_snapshot.json").read_text()
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--snapshot"]:
        print(json.dumps(snapshot(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_markdown())

"""The contract is the code: the document is generated from it and evolution is additive only."""

from __future__ import annotations

import pandas as pd
import pytest

from oil_analysis.domain import contracts

from .conftest import REPO


def test_data_contracts_document_is_generated_from_code():
    doc = (REPO / "docs" / "DATA_CONTRACTS.md").read_text(encoding="utf-8")
    assert doc == contracts.render_markdown(), (
        "docs/DATA_CONTRACTS.md differs from the code: run `uv run python -m oil_analysis.domain.contracts > docs/DATA_CONTRACTS.md`"
    )


def test_evolution_is_additive_only():
    published = contracts.load_snapshot()
    current = contracts.snapshot()
    for table, columns in published.items():
        assert table in current, f"table {table} was removed"
        for name, typ in columns.items():
            assert name in current[table], f"{table}.{name} was removed"
            assert current[table][name] == typ, f"{table}.{name} was retyped {typ} -> {current[table][name]}"


def test_conform_names_missing_mistyped_and_null_columns():
    cols = contracts.tables()["machine_status_current"][1]
    ok = pd.DataFrame(
        {
            c.name: pd.Series(
                dtype={
                    "string": "string",
                    "double": "float64",
                    "int64": "int64",
                    "bool": "bool",
                    "timestamp[us]": "datetime64[us]",
                }[str(c.type)]
            )
            for c in cols
        }
    )
    assert list(contracts.conform(ok.assign(extra=1), "machine_status_current").columns)[-1] == "extra"
    with pytest.raises(contracts.ContractError, match=r"missing columns \['priority'\]"):
        contracts.conform(ok.drop(columns=["priority"]), "machine_status_current")
    with pytest.raises(contracts.ContractError, match="priority has dtype"):
        contracts.conform(ok.assign(priority=pd.Series(["x"], dtype="string")), "machine_status_current")
    one = ok.reindex([0])
    for c in ("total_components", "components_normal", "components_alerta", "components_anormal"):
        one[c] = 0
    one = one.astype(ok.dtypes.to_dict())
    with pytest.raises(contracts.ContractError, match="unitId has 1 nulls"):
        contracts.conform(one, "machine_status_current")

"""deploy/*.json: least-privilege IAM policies and lifecycle rules that name only prefixes the code writes."""

from __future__ import annotations

import fnmatch
import json
import pathlib

import pytest

from oil_analysis.settings import get_settings
from oil_analysis.storage import layout, legacy, manifest

DEPLOY = pathlib.Path(__file__).resolve().parents[1] / "deploy"
PRODUCT, CONSUMER, LIFECYCLE = "iam-product-policy.json", "iam-consumer-policy.json", "s3-lifecycle.json"


def load(name: str) -> dict:
    return json.loads((DEPLOY / name).read_text())


@pytest.fixture
def defaults(monkeypatch):
    for var in ("S3_BUCKET", "S3_PREFIX", "USE_S3", "STORAGE_MODE"):
        monkeypatch.delenv(var, raising=False)
    s = get_settings()
    return s.s3_bucket, s.s3_prefix


def written_paths() -> list[str]:
    """Every kind of path the product writes, relative to the root, from the code that names them."""
    c, v = "cda", "limits-0123456789abcdef"
    return [
        f"{layout.bronze_dir(c)}/2024-05-01/T-01.xlsx",
        layout.registry_path(c),
        layout.parsed_path(c, "0" * 64),
        layout.quarantine_path(c, "bad.xlsx"),
        layout.harmonized_path(c),
        layout.rejects_path(c),
        f"{layout.limits_dir(c, v)}/stewart_limits.parquet",
        layout.limits_latest(c),
        layout.gold_path(c, "classified_reports"),
        manifest.manifest_path(c),
        manifest.part_path(c, "classified_reports"),
        *legacy.all_paths(c),
    ]


def statements(policy: dict) -> list[dict]:
    assert policy["Version"] == "2012-10-17"
    return policy["Statement"]


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def named_prefixes(bucket: str, prefix: str) -> list[str]:
    """Every key prefix the deploy files name, relative to the product prefix."""
    out = []
    for name in (PRODUCT, CONSUMER):
        for st in statements(load(name)):
            for arn in as_list(st["Resource"]):
                if "/" in arn:
                    out.append(arn.removeprefix(f"arn:aws:s3:::{bucket}/"))
            for cond in st.get("Condition", {}).values():
                out += as_list(cond.get("s3:prefix", []))
    out += [r["Filter"]["Prefix"] for r in load(LIFECYCLE)["Rules"]]
    rel = []
    for p in out:
        assert p.startswith(f"{prefix}/"), f"{p!r} is outside the product prefix {prefix!r}"
        rel.append(p.removeprefix(f"{prefix}/").rstrip("*"))
    return rel


def test_every_prefix_named_is_one_the_code_writes(defaults):
    bucket, prefix = defaults
    paths = written_paths()
    named = named_prefixes(bucket, prefix)
    assert {"", "gold/", "silver/"} <= set(named)
    for p in named:
        assert any(w.startswith(p) for w in paths), f"deploy files name {p!r}, which the code never writes"


def test_product_policy_reads_and_writes_only_its_prefix(defaults):
    bucket, prefix = defaults
    sts = statements(load(PRODUCT))
    objects = [s for s in sts if s["Resource"] != f"arn:aws:s3:::{bucket}"]
    assert [s["Resource"] for s in objects] == [f"arn:aws:s3:::{bucket}/{prefix}/*"]
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"} <= set(
        objects[0]["Action"]
    )
    listing = [s for s in sts if s["Resource"] == f"arn:aws:s3:::{bucket}"]
    assert [as_list(s["Action"]) for s in listing] == [["s3:ListBucket"]]
    assert listing[0]["Condition"]["StringLike"]["s3:prefix"] == [f"{prefix}/", f"{prefix}/*"]
    for s in sts:
        assert (
            s["Effect"] == "Allow" and "*" not in as_list(s["Action"]) and "s3:*" not in as_list(s["Action"])
        )


def test_consumer_policy_reads_gold_only(defaults):
    bucket, prefix = defaults
    for s in statements(load(CONSUMER)):
        actions = set(as_list(s["Action"]))
        assert actions <= {"s3:GetObject", "s3:ListBucket"}
        if "s3:GetObject" in actions:
            assert as_list(s["Resource"]) == [f"arn:aws:s3:::{bucket}/{prefix}/gold/*"]
        else:
            assert s["Condition"]["StringLike"]["s3:prefix"] == [f"{prefix}/gold/", f"{prefix}/gold/*"]
    readable = [p for p in written_paths() if fnmatch.fnmatch(f"{prefix}/{p}", f"{prefix}/gold/*")]
    assert readable and all(p.startswith("gold/") for p in readable)
    assert manifest.manifest_path("cda") in readable


def test_lifecycle_keeps_bronze_archives_silver_and_expires_old_gold_versions(defaults):
    _, prefix = defaults
    rules = load(LIFECYCLE)["Rules"]
    assert all(r["Status"] == "Enabled" for r in rules) and len({r["ID"] for r in rules}) == len(rules)

    def covering(path: str) -> list[dict]:
        return [r for r in rules if f"{prefix}/{path}".startswith(r["Filter"]["Prefix"])]

    destructive = ("Expiration", "NoncurrentVersionExpiration", "Transitions", "NoncurrentVersionTransitions")
    for path in (f"{layout.bronze_dir('cda')}/2024-05-01/T-01.xlsx", layout.registry_path("cda")):
        assert covering(path) and not any(k in r for r in covering(path) for k in destructive)
    silver = [r for r in covering(layout.harmonized_path("cda")) if "Transitions" in r]
    assert [(t["Days"], t["StorageClass"]) for r in silver for t in r["Transitions"]] == [(365, "GLACIER_IR")]
    assert not any("Expiration" in r or "NoncurrentVersionExpiration" in r for r in silver)
    gold = [
        r
        for r in covering(layout.gold_path("cda", "classified_reports"))
        if "NoncurrentVersionExpiration" in r
    ]
    assert [r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in gold] == [30]
    assert not any("Expiration" in r for r in covering(layout.gold_path("cda", "classified_reports")))
    assert any(r.get("AbortIncompleteMultipartUpload") for r in covering(layout.gold_path("cda", "x")))

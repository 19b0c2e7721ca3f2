"""Storage backends: the full graph on the demo data, local disk vs a real S3 server, same process.

    uv run python bench/storage_bench.py [--rounds 3] [--budget 1.5]

Starts SeaweedFS (``weed mini``) on 127.0.0.1, uploads the demo raw files to
``bronze/{client}/{date}/`` of a fresh prefix, and times a cold run of every asset for every client
(parse, silver, limits, gold, manifest) in local mode and in S3 mode, alternating, ``--rounds``
times; each run gets a fresh root so both parse everything. Compares the gold objects' sha256 across
backends. Prints one result line; exits 1 when the S3/local ratio of the medians exceeds the budget
or when gold differs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from dagster import DagsterInstance, materialize  # noqa: E402

from oil_analysis.assets.common import CLIENTS  # noqa: E402
from oil_analysis.definitions import all_assets, build_resources  # noqa: E402
from oil_analysis.storage import layout  # noqa: E402
from oil_analysis_tests.s3_server import SeaweedS3  # noqa: E402

DEMO = pathlib.Path(__file__).resolve().parents[1] / "data" / "bronze"
DAY = "2024-05-01"
GOLD = ("classified_reports", "machine_status_current", "limit_quality")
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
ENV_KEYS = (
    "USE_S3",
    "STORAGE_MODE",
    "S3_BUCKET",
    "S3_PREFIX",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "OIL_DATA_ROOT",
    "OIL_LLM_OFFLINE",
)


def run_all(clients: list[str], data_root: str = "") -> float:
    start = time.perf_counter()
    for client in clients:
        with DagsterInstance.ephemeral() as instance:
            result = materialize(
                all_assets,
                partition_key=client,
                instance=instance,
                resources=build_resources(data_root),
                run_config=QUIET,
            )
        if not result.success:
            raise SystemExit(f"storage_bench: run of {client} failed")
    return time.perf_counter() - start


def gold_digests(read, clients: list[str]) -> dict[str, str]:
    return {
        layout.gold_path(c, n): hashlib.sha256(read(layout.gold_path(c, n))).hexdigest()
        for c in clients
        for n in GOLD
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=1.5)
    args = ap.parse_args()
    clients = sorted(CLIENTS)
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    local_s, s3_s = [], []
    with tempfile.TemporaryDirectory() as tmp, SeaweedS3(pathlib.Path(tmp) / "s3") as server:
        os.environ["OIL_LLM_OFFLINE"] = "true"
        try:
            for i in range(args.rounds + 1):  # round 0 warms imports and caches, not counted
                root = pathlib.Path(tmp) / f"local-{i}"
                for c in clients:
                    shutil.copytree(DEMO / c, root / "bronze" / c / DAY)
                os.environ.update({"USE_S3": "false", "OIL_DATA_ROOT": str(root)})
                t_local = run_all(clients, str(root))

                prefix = f"bench-{uuid.uuid4().hex[:8]}"
                for c in clients:
                    server.upload_tree(DEMO / c, f"{prefix}/bronze/{c}/{DAY}")
                os.environ.update(server.env(prefix))
                t_s3 = run_all(clients)
                if i:
                    local_s.append(t_local)
                    s3_s.append(t_s3)
            local_gold = gold_digests(lambda p: (root / p).read_bytes(), clients)
            objects = server.keys(prefix)
            s3_gold = gold_digests(lambda p: objects[f"{prefix}/{p}"], clients)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    local_med, s3_med = statistics.median(local_s), statistics.median(s3_s)
    ratio = s3_med / local_med
    same = local_gold == s3_gold
    print(
        f"storage_bench: full graph, demo data, {len(clients)} clients, cold runs, median of {args.rounds}: "
        f"local {local_med:.2f} s, S3 (SeaweedFS on 127.0.0.1) {s3_med:.2f} s, ratio {ratio:.2f} "
        f"(budget {args.budget:.2f}); gold sha256 identical across backends: {'yes' if same else 'NO'}"
    )
    ok = ratio <= args.budget and same
    if not ok:
        print("storage_bench: FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

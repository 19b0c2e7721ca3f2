"""One tick of raw_files_s3_sensor over 10,000 existing keys plus 10 new ones (target ≤ 5 s).

Starts a real S3 server (SeaweedFS on 127.0.0.1), uploads 10,000 small objects under
bronze/cda/, lets a first tick establish the cursor, uploads 10 more and times the next tick.
Prints ``sensor_bench: ...``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dagster import DagsterInstance, build_sensor_context  # noqa: E402

from oil_analysis_tests.s3_server import SeaweedS3  # noqa: E402


def main() -> int:
    n_existing, n_new = 10_000, 10
    with tempfile.TemporaryDirectory() as tmp, SeaweedS3(tmp) as server:
        os.environ.update(server.env(prefix="bench"))
        # The first tick takes the whole backlog in one request, so the timed tick is the steady state.
        os.environ["OIL_SENSOR_MAX_FILES_PER_RUN"] = str(n_existing + n_new)
        from oil_analysis.automation.sensors import raw_files_s3_sensor
        from oil_analysis.definitions import defs

        s3 = server.client()

        def put(i: int) -> None:
            s3.put_object(Bucket=server.bucket, Key=f"bench/bronze/cda/2026-01-01/f{i:05d}.xlsx", Body=b"x")

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(n_existing)))
        time.sleep(2.1)  # the backlog is older than the cursor's one-second safety margin
        with DagsterInstance.ephemeral() as instance:
            first = raw_files_s3_sensor(build_sensor_context(instance=instance, definitions=defs))
            time.sleep(1.1)  # the new files land in a later second than the cursor's mark
            for i in range(n_existing, n_existing + n_new):
                put(i)
            start = time.perf_counter()
            result = raw_files_s3_sensor(
                build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs)
            )
            took = time.perf_counter() - start
        files = sum(int(r.tags["oil/files"]) for r in result.run_requests or [])
    print(
        f"sensor_bench: one tick over {n_existing:,} existing + {n_new} new keys: {took:.2f} s, "
        f"{len(result.run_requests or [])} run request(s) covering {files} new file(s) (target ≤ 5 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

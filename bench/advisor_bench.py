"""Advisor throughput: N recommendations against the loopback LLM server with injected latency.

    uv run python bench/advisor_bench.py [--n 1000] [--latency 0.3] [--concurrency 16] [--budget 30]

Runs the real path (prompt building, AsyncOpenAI, cache write) against ``FakeLLMServer`` on
127.0.0.1, then re-runs with unchanged inputs (all cache hits, zero requests). Prints one result
line; exits 1 when the first run exceeds the budget in seconds.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from oil_analysis.domain.catalog import load_catalog  # noqa: E402
from oil_analysis.pipeline.advice import recommend_reports  # noqa: E402
from oil_analysis.resources.llm_client import LLMConfig  # noqa: E402
from oil_analysis.storage.filesystem import Storage  # noqa: E402
from oil_analysis_tests.llm_server import FakeLLMServer, advisor_reports  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--concurrency", type=int, default=LLMConfig(api_key="").concurrency)
    ap.add_argument("--budget", type=float, default=30.0)
    args = ap.parse_args()

    reports = advisor_reports(args.n, units=50)
    catalog = load_catalog()
    with tempfile.TemporaryDirectory() as root, FakeLLMServer(latency_s=args.latency) as server:
        store = Storage.local(root)
        llm = LLMConfig(
            api_key="bench", base_url=server.base_url, concurrency=args.concurrency, max_calls=None
        )
        t0 = time.perf_counter()
        out, stats = recommend_reports(reports, store, "bench", llm, catalog)
        elapsed = time.perf_counter() - t0
        llm_rows = int((out["ai_source"] == "llm").sum())

        t1 = time.perf_counter()
        _, again = recommend_reports(reports, store, "bench", llm, catalog)
        rerun = time.perf_counter() - t1

    rate = stats["calls"] / elapsed if elapsed else float("inf")
    print(
        f"advisor_bench: {llm_rows}/{args.n} recommendations via LLM, latency {args.latency * 1000:.0f} ms, "
        f"concurrency {args.concurrency}: {elapsed:.2f} s, {rate:.1f} calls/s, max in flight "
        f"{server.max_in_flight}; re-run {again['calls']} calls, {again['cache_hits']} cache hits, "
        f"{rerun:.2f} s"
    )
    ok = elapsed <= args.budget and llm_rows == args.n and again["calls"] == 0
    if not ok:
        print(f"advisor_bench: FAILED (budget {args.budget:.0f} s)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Command line (the Makefile's targets call it):

* ``python -m oil_analysis run [--clients cda,emin] [--ephemeral]`` materializes every asset for each
  client in this process and prints a fleet summary. The runs are recorded in the instance at
  ``DAGSTER_HOME`` (default ``./.dagster_home``, the one ``make ui`` shows); ``--ephemeral`` uses a
  throw-away instance instead.
* ``python -m oil_analysis backfill [--clients cda,emin] [--timeout 1800]`` launches one run per
  client through ``workspace.yaml`` (code location ``oil_analysis``), waits for them and exits
  non-zero naming the failed run ids (:mod:`oil_analysis.automation.backfill`).
* ``python -m oil_analysis summary`` prints the summary of what is already written.
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from .assets.common import CLIENTS, status_counts
from .settings import get_settings
from .storage import layout
from .storage.filesystem import Storage
from .storage.healing import read_limits_pointer

# Console logs at WARNING: the run's events are in the instance; the terminal shows the summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def summarize(store: Storage, client: str) -> list[str]:
    lines = [f"== {client} ({CLIENTS[client].display_name}, {CLIENTS[client].lab_format})"]
    silver = store.read_parquet(layout.harmonized_path(client))
    latest = read_limits_pointer(store, client)  # a damaged pointer is rebuilt from the versions present
    limits = store.read_parquet(layout.limits_file(latest["path"]))
    reports = store.read_parquet(layout.gold_path(client, "classified_reports"))
    machines = store.read_parquet(layout.gold_path(client, "machine_status_current"))
    rc, mc = status_counts(reports["report_status"]), status_counts(machines["machine_status"])
    lines.append(f"  samples            {len(silver):>7,}   units {silver['unitId'].nunique()}")
    lines.append(f"  limit rows         {len(limits):>7,}   version {latest['version']}")
    lines.append(
        "  report status      "
        + "  ".join(f"{k} {v:,}" for k, v in rc.items())
        + f"   (flag rate {1 - rc['Normal'] / max(len(reports), 1):.1%})"
    )
    lines.append("  machines by status " + "  ".join(f"{k} {v}" for k, v in mc.items()))
    worst = machines.sort_values("priority", ascending=False).head(3)
    for r in worst.itertuples(index=False):
        if r.machine_status != "Normal":
            lines.append(f"    needs attention: {r.unitId} {r.machine_status} (score {r.machine_score:g})")
    paths = [
        layout.harmonized_path(client),
        layout.limits_file(latest["path"]),
        layout.limits_file(latest["path"], "json"),
        layout.limits_latest(client),
        layout.gold_path(client, "classified_reports"),
        layout.gold_path(client, "machine_status_current"),
        layout.gold_path(client, "limit_quality"),
    ]
    lines.append("  written:")
    lines += [f"    {store.display(p)}" for p in paths]
    if store.exists(layout.fleet_report_path(client)):
        lines.append(f"  fleet report       {store.display(layout.fleet_report_path(client))}")
    return lines


def run(clients: list[str], ephemeral: bool = False) -> int:
    from .automation.backfill import cli_instance
    from .definitions import defs

    job = defs.resolve_job_def("oil_analysis_job")
    instance = cli_instance(ephemeral)
    failed = []
    for client in clients:
        start = time.perf_counter()
        result = job.execute_in_process(
            partition_key=client, instance=instance, raise_on_error=False, run_config=QUIET
        )
        took = time.perf_counter() - start
        if not result.success:
            failed.append(client)
            for ev in result.all_events:
                if ev.is_failure:
                    print(f"[{client}] {ev.step_key}: {ev.message}", file=sys.stderr)
        print(f"[{client}] {'ok' if result.success else 'FAILED'} in {took:.1f} s")
    store = Storage.from_settings(get_settings())
    for client in clients:
        if client not in failed:
            print("\n".join(summarize(store, client)))
    if not ephemeral:
        print(
            f"\nruns recorded in the instance DAGSTER_HOME={get_settings().instance_home()} (`make ui` shows them)"
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oil_analysis")
    sub = ap.add_subparsers(dest="cmd", required=True)
    parsers = {
        "run": sub.add_parser("run", help="materialize every asset of each client in this process"),
        "backfill": sub.add_parser(
            "backfill", help="one run per client through workspace.yaml; waits, non-zero on a failed run"
        ),
        "summary": sub.add_parser("summary", help="the fleet summary of what is already written"),
    }
    for p in parsers.values():
        p.add_argument("--clients", default=",".join(sorted(CLIENTS)), help="comma list of client keys")
    parsers["run"].add_argument(
        "--ephemeral", action="store_true", help="a throw-away instance: the UI will not show these runs"
    )
    parsers["backfill"].add_argument(
        "--timeout", type=float, default=1800.0, help="seconds to wait for the runs (default 1800)"
    )
    parsers["backfill"].add_argument(
        "--workspace", default="workspace.yaml", help="workspace file (the one `make ui` loads)"
    )
    a = ap.parse_args(argv)
    clients = [c.strip() for c in a.clients.split(",") if c.strip()]
    unknown = [c for c in clients if c not in CLIENTS]
    if unknown:
        print(f"unknown clients {unknown}; known: {sorted(CLIENTS)}", file=sys.stderr)
        return 2
    if a.cmd == "run":
        return run(clients, a.ephemeral)
    if a.cmd == "backfill":
        from pathlib import Path

        from .automation.backfill import backfill

        return backfill(clients, Path(a.workspace), a.timeout)
    store = Storage.from_settings(get_settings())
    for c in clients:
        print("\n".join(summarize(store, c)))
    return 0


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    sys.exit(main())

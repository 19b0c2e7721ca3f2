"""The bad-input suite report: cases, passed, good samples lost, peak memory.

    .venv/bin/python -m oil_analysis_tests.bad_input_report

Runs the bad-input tests (``test_bad_inputs.py``, ``test_bad_inputs_classes.py``,
``test_reject_ledger.py``) in a child pytest, then prints one line per figure. Each test that runs
the graph appends its good-sample figures to ``OIL_BAD_INPUT_REPORT``; peak memory is the largest
resident set of the child and of every process it waited for (the parser processes included), from
``getrusage(RUSAGE_CHILDREN)``. Exits non-zero when a test fails, a good sample is lost or the peak
reaches 2 GB.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SUITE = [
    "oil_analysis_tests/test_bad_inputs.py",
    "oil_analysis_tests/test_bad_inputs_classes.py",
    "oil_analysis_tests/test_reject_ledger.py",
]
PEAK_LIMIT_MB = 2048


def main() -> int:
    """Run the suite and print the report; the exit code says whether every goal holds."""
    with tempfile.TemporaryDirectory() as tmp:
        figures = os.path.join(tmp, "good_samples.jsonl")
        junit = os.path.join(tmp, "junit.xml")
        env = {**os.environ, "OIL_BAD_INPUT_REPORT": figures}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *SUITE]
        subprocess.run(cmd, env=env, check=False)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        root = ET.parse(junit).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        cases = sum(int(s.get("tests", 0)) for s in suites)
        failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
        skipped = sum(int(s.get("skipped", 0)) for s in suites)
        rows = []
        if os.path.exists(figures):
            with open(figures) as f:
                rows = [json.loads(line) for line in f if line.strip()]
    good = sum(r["good"] for r in rows)
    lost = sum(r["lost"] for r in rows)
    print("bad-input suite report")
    print(f"  cases              {cases}")
    print(f"  passed             {cases - failed - skipped}")
    print(f"  failed             {failed}")
    print(f"  skipped            {skipped}")
    print(f"  good samples       {good} (in {len(rows)} graph runs)")
    print(f"  good samples lost  {lost}")
    print(f"  peak memory        {peak_mb:,.0f} MB (limit {PEAK_LIMIT_MB:,} MB)")
    return 0 if failed == 0 and lost == 0 and peak_mb < PEAK_LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())

"""The code location's processes freeze their imported heap (oil_analysis/resources/heap.py): later
collections and the interpreter's exit skip it, while run-time garbage is still collected and the
exit status and last output of the process are kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .conftest import REPO


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_loading_the_code_location_freezes_its_heap_and_still_collects_new_garbage():
    proc = _run(
        """
        import gc
        import oil_analysis.definitions
        frozen = gc.get_freeze_count()
        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle created after the freeze
        del a, b
        print(frozen, gc.collect())
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    frozen, collected = map(int, proc.stdout.split())
    assert frozen > 50_000  # dagster, pandas and our definitions
    assert collected >= 2  # the new cycle is not frozen: it is freed


def test_the_exit_hook_keeps_the_exit_status_and_the_last_output():
    proc = _run(
        """
        import atexit, sys
        import oil_analysis.definitions
        atexit.register(lambda: print("hook registered later ran"))
        print("last line", end="")
        sys.exit(3)
        """
    )
    assert proc.returncode == 3
    assert "last line" in proc.stdout and "hook registered later ran" in proc.stdout

"""The heap of the processes that load the code location: no full GC walk over what never dies.

A process that loads the code location (``dg launch``, a run worker, the code server) holds ~1.5
million objects from its imports alone (dagster, pandas, pyarrow, sqlalchemy). CPython's cyclic
collector walks all of them at every generation-2 collection and twice more at interpreter exit:
0.6–0.9 s of a CLI materialization here went to the exit alone, after the run had ended
(bench/README.md, "Speed work").

* :func:`freeze_imports` moves the objects alive now (modules, classes, functions: they live as long
  as the process) to the collector's permanent generation, so later collections skip them; objects
  created afterwards (a run's frames and tables) are collected as usual.
* :func:`quick_exit_gc` registers an ``atexit`` hook, run after every hook registered later, that
  freezes the heap before the interpreter finalises: exit no longer walks it. Nothing is skipped
  that CPython guarantees: finalizers of objects still alive at exit are not guaranteed to run, and
  files, sockets and databases are closed by their owners' own ``atexit`` hooks, which run before.
"""

from __future__ import annotations

import atexit
import gc

_registered = False


def freeze_imports() -> None:
    """Freeze every object alive now (after imports and definitions are built)."""
    gc.collect()  # what is already garbage is freed now rather than kept forever
    gc.freeze()


def quick_exit_gc() -> None:
    """Freeze the heap at exit, after the other exit hooks (idempotent)."""
    global _registered
    if not _registered:
        _registered = True
        atexit.register(gc.freeze)

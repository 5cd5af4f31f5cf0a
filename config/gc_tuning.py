"""Garbage-collector settings for the long-lived server processes (gunicorn and Celery workers).

An ingest request or an attribution task allocates tens of thousands of short-lived objects
(decoded JSON, rows, domain values). With CPython's default gen-0 threshold of 700 that means
dozens of collections per request, and every older-generation collection walks the whole heap
that Django, DRF and the app created at start-up (hundreds of thousands of objects that live as
long as the process). Two standard remedies, applied once a process has finished loading:

* ``gc.freeze()`` moves everything alive after start-up into the permanent generation, so
  collections never scan it again (the approach Instagram described for their Django fleet);
* a larger gen-0 threshold, so short-lived garbage is collected in fewer, cheaper passes.

Reference counting still frees almost everything immediately; only cycles wait for a pass.
Measured effect: docs/performance.md ("Garbage collection").
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 20


def tune_for_server() -> None:
    """Call once per worker process, after the application is loaded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)

"""gunicorn config for ``benchmarks/post_profile.py --gunicorn``'s profile phase (not for serving).

The settings and hooks of the config file named by ``POST_PROFILE_CONFIG`` (empty: gunicorn's
defaults), plus a cProfile with a per-thread CPU clock in every thread of the worker that handles
requests: the main thread from ``post_fork`` (gthread's poll loop and keep-alive bookkeeping,
or all of a sync worker), each request thread from its first ``pre_request``. A request with the
header ``X-Bench-Profile: start`` clears every profiler (the warm-up is not counted); on exit the
worker writes the merged statistics to ``$POST_PROFILE_OUT/<pid>.prof``.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import runpy
import threading
import time

_product = os.environ.get("POST_PROFILE_CONFIG", "")
_settings = {k: v for k, v in runpy.run_path(_product).items() if not k.startswith("__")} if _product else {}
globals().update(_settings)

_profilers: list[cProfile.Profile] = []
_local = threading.local()


def _profile_this_thread() -> None:
    if getattr(_local, "profiler", None) is None:
        profiler = cProfile.Profile(time.thread_time)
        _local.profiler = profiler
        _profilers.append(profiler)
        profiler.enable()


def _chain(name: str):
    hook = _settings.get(name)
    return hook if callable(hook) else (lambda *args: None)


_product_post_fork = _chain("post_fork")
_product_pre_request = _chain("pre_request")
_product_worker_exit = _chain("worker_exit")


def post_fork(server, worker) -> None:
    _product_post_fork(server, worker)
    _profile_this_thread()


def pre_request(worker, req) -> None:
    _profile_this_thread()
    if any(name == "X-BENCH-PROFILE" and value == "start" for name, value in req.headers):
        for profiler in _profilers:
            profiler.clear()
    _product_pre_request(worker, req)


def worker_exit(server, worker) -> None:
    for profiler in _profilers:
        profiler.disable()
    if _profilers:
        pstats.Stats(*_profilers).dump_stats(os.path.join(os.environ["POST_PROFILE_OUT"], f"{os.getpid()}.prof"))
    _product_worker_exit(server, worker)

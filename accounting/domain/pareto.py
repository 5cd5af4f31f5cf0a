"""Pareto fronts: one dominance rule and one front algorithm (pure, stdlib only).

A point is dominated when another is at least as good on every objective and strictly better
on one; exact duplicates do not dominate each other, so they share the front. Two objectives
(the dashboard's carbon per unit against throughput or quality, the what-if trade-off summary
without quality) use the O(n log n) sweep :func:`pareto_front`; the what-if summary with a
quality objective (compared only where both jobs report it) uses :func:`pareto_front_partial`,
the same dominance rule checked pairwise. ``tests/domain/test_pareto.py`` checks the sweep
against the pairwise rule on random points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def dominates(a: Sequence[float | None], b: Sequence[float | None], *, maximise: Sequence[bool]) -> bool:
    """``a`` is no worse than ``b`` on every objective both report (``None``: not reported)
    and strictly better on one."""
    pairs = [
        (x, y) if up else (-x, -y) for x, y, up in zip(a, b, maximise, strict=True) if x is not None and y is not None
    ]
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


def pareto_front(
    points: Sequence[tuple[float, float]], *, x_higher_is_better: bool = True, y_lower_is_better: bool = True
) -> list[int]:
    """Indices of the points no other point dominates, ordered along x.

    Sweep along x from best to worst (ties: best y first), keeping the best y seen so far; a
    point is on the front when its y beats every point before it, or repeats the last front
    point exactly. Values may be infinite, not NaN."""
    sx = -1.0 if x_higher_is_better else 1.0
    sy = 1.0 if y_lower_is_better else -1.0
    order = sorted(range(len(points)), key=lambda i: (sx * points[i][0], sy * points[i][1]))
    front: list[int] = []
    best_y = math.inf
    last_x = None
    for i in order:
        x, y = points[i]
        y_key = sy * y
        if not front or y_key < best_y:  # the first point is on the front even at y = ±inf
            front.append(i)
            best_y = y_key
            last_x = x
        elif y_key == best_y and x == last_x:
            front.append(i)  # exact duplicates share the front
    return sorted(front, key=lambda i: points[i][0])


def pareto_front_partial(points: Sequence[Sequence[float | None]], *, maximise: Sequence[bool]) -> list[int]:
    """Indices (in input order) of the points no other point dominates under :func:`dominates`,
    for any number of objectives, some possibly unreported. With exactly two objectives all
    reported this is :func:`pareto_front`; otherwise the pairwise check (O(n²))."""
    if len(maximise) == 2:
        xy = [(float(x), float(y)) for x, y in ((p[0], p[1]) for p in points) if x is not None and y is not None]
        if len(xy) == len(points):  # both objectives reported by every point
            return sorted(pareto_front(xy, x_higher_is_better=maximise[0], y_lower_is_better=not maximise[1]))
    return [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p, maximise=maximise) for j, q in enumerate(points) if j != i)
    ]

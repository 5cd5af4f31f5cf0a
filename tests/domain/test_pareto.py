"""The one Pareto front (accounting.domain.pareto): hand-worked fronts and the sweep against
the pairwise dominance rule on random points."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from accounting.domain.pareto import dominates, pareto_front, pareto_front_partial


def test_front_higher_x_lower_y():
    # The dashboard's cases (formerly accounting.selectors.dashboard.pareto_front).
    pts = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (2.0, 3.0), (3.0, 4.0), (0.5, 2.0), (3.0, 3.0)]
    assert pareto_front(pts) == [0, 1, 2, 6]  # duplicates share the front
    assert pareto_front(pts, x_higher_is_better=False) == [5, 0]
    assert pareto_front([(1.0, 5.0), (4.0, 1.0)]) == [1]
    assert pareto_front([]) == []
    # Higher x and higher y better: (3, 4) is at least as good as every other point on both.
    assert pareto_front(pts, y_lower_is_better=False) == [4]


def test_infinite_values_keep_their_front():
    # The old sweep started from best_y = inf and dropped a front whose best y was inf.
    assert pareto_front([(1.0, math.inf), (2.0, math.inf)]) == [1]
    assert pareto_front([(math.inf, 3.0), (1.0, 1.0)]) == [1, 0]


def test_dominance_ignores_unreported_objectives():
    up = (False, True, True)  # carbon per unit down, throughput and quality up
    assert dominates((1.0, 100.0, None), (2.0, 50.0, 0.9), maximise=up)
    assert not dominates((1.0, 100.0, 0.5), (2.0, 50.0, 0.9), maximise=up)
    assert not dominates((1.0, 100.0, 0.9), (1.0, 100.0, 0.9), maximise=up)  # duplicates
    assert pareto_front_partial([(1.0, 100.0, 0.5), (2.0, 50.0, 0.9), (3.0, 40.0, 0.8)], maximise=up) == [0, 1]


def _brute(points, x_up, y_up):
    return sorted(
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p, maximise=(x_up, y_up)) for j, q in enumerate(points) if j != i)
    )


coord = st.one_of(st.integers(-5, 5).map(float), st.floats(-1e6, 1e6), st.sampled_from([math.inf, -math.inf]))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(coord, coord), max_size=40), st.booleans(), st.booleans())
def test_sweep_equals_the_pairwise_front(points, x_up, y_lower):
    front = pareto_front(points, x_higher_is_better=x_up, y_lower_is_better=y_lower)
    assert sorted(front) == _brute(points, x_up, not y_lower)
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)  # ordered along x
    assert pareto_front_partial(points, maximise=(x_up, not y_lower)) == sorted(front)

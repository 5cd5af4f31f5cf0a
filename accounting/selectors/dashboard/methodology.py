"""The methodology page: every factor in use for the viewer's organisations, with its source
and version, and the method versions of the visible footprints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count

from accounting.domain.embodied import EMBODIED_VERSION
from accounting.domain.market_based import MARKET_METHOD_VERSION
from accounting.domain.water import WATER_METHOD_VERSION
from accounting.domain.worked_example import basis_worked_example
from accounting.models import JobFootprint, Organization
from accounting.selectors.access import Principal, jobs_visible
from accounting.selectors.factors import FactorRow as FactorInUse
from accounting.selectors.factors import factors_in_use


@dataclass(frozen=True)
class FactorRow:
    category: str
    name: str
    value: str
    unit: str
    source: str
    version: str


def _factor_row(item: FactorInUse) -> FactorRow:
    """``factors_in_use``'s row as the page shows it: PUE capitalised, values and versions as text."""
    value = item.value
    category = item.factor.replace("pue", "PUE")
    since = item.effective_since
    return FactorRow(
        category=category[:1].upper() + category[1:],
        name=item.key,
        value="—" if value is None else (f"{value:g}" if isinstance(value, (int, float)) else str(value)),
        unit=item.unit,
        source=item.source + (f" (since {since:%Y-%m-%d})" if since is not None else ""),
        version=f"v{item.version}" if isinstance(item.version, int) else str(item.version),
    )


def methodology_factor_list(*, scope: Principal) -> dict[str, Any]:
    """Every factor in use for the viewer's organisations with its source and version
    (``accounting.selectors.factors.factors_in_use`` owns the definition of "in use")."""
    orgs = list(Organization.objects.filter(scope.orgs_q("id")).order_by("name"))
    rows: list[FactorRow] = []
    seen: set[FactorRow] = set()
    for org in orgs:
        for item in factors_in_use(org=org):
            row = _factor_row(item)
            if row not in seen:
                seen.add(row)
                rows.append(row)
    versions = list(
        JobFootprint.objects.filter(job__in=jobs_visible(principal=scope).values("id"))
        .values_list("method_version")
        .annotate(n=Count("job_id"))
        .order_by("method_version")
    )
    # "source" tells the template where the list came from; factors_in_use is the only source.
    return {
        "rows": rows,
        "source": "factors_in_use",
        "method_versions": versions,
        "orgs": [o.name for o in orgs],
        # The basis table's worked example, computed by the same rules (tests/domain/test_market_based.py).
        "example": basis_worked_example(),
        "versions": {
            "market": MARKET_METHOD_VERSION,
            "water": WATER_METHOD_VERSION,
            "embodied": EMBODIED_VERSION,
        },
    }

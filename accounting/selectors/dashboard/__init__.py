"""Reads for the web dashboard, one module per page, each reading the ledger aggregates
(JobFootprint, JobHour, DeviceHour, TeamDay) and the fleet/factor tables, never raw telemetry:

* ``common``: team options, periods, the scoped TeamDay and Job querysets, the what-if choices;
* ``overview``, ``jobs`` (list and CSV export), ``job_detail`` (and ``serving``, its card for
  an inference service), ``live``, ``tradeoffs``,
  ``budgets``, ``methodology``, ``reports``; the sites and devices pages read
  ``accounting.selectors.fleet``.

Every function takes the viewer's :class:`~accounting.selectors.access.Principal` as ``scope``
and filters by it, so a page or an export cannot forget the one access rule: a superuser sees
everything; an organisation admin sees all of that organisation, including the fleet-overhead
account (TeamDay rows with team NULL); a team member sees the rows of their teams only.

Return values are plain dataclasses/dicts with units in the names. Callers import the package
(``from accounting.selectors import dashboard as sel``); every public name is re-exported here.
"""

from accounting.domain.pareto import pareto_front
from accounting.selectors.dashboard.budgets import BudgetRow, team_budget_list
from accounting.selectors.dashboard.common import (
    LOST_STATUSES,
    OVERHEAD_LABEL,
    UTC,
    Period,
    TeamOption,
    team_option_list,
    viewer_scope_get,
    whatif_option_get,
)
from accounting.selectors.dashboard.job_detail import UnitEfficiencyRow, job_detail_get, quality_label
from accounting.selectors.dashboard.jobs import (
    EXPORT_COLUMNS,
    SORT_FIELDS,
    JobListFilters,
    JobPage,
    JobRow,
    job_export_rows,
    job_list,
    job_user_option_list,
)
from accounting.selectors.dashboard.live import running_job_list
from accounting.selectors.dashboard.methodology import FactorRow, methodology_factor_list
from accounting.selectors.dashboard.overview import (
    GROUP_BY_CHOICES,
    Overview,
    OverviewKpis,
    SeriesGroup,
    overview_disclosure_get,
    overview_get,
)
from accounting.selectors.dashboard.power import YOUNG_JOB_S, fleet_power_get, job_power_get
from accounting.selectors.dashboard.reports import report_month_get, report_month_list
from accounting.selectors.dashboard.serving import (
    DEFAULT_SERVICE_PERIOD,
    SERVICE_PERIODS,
    ServiceHours,
    ServiceRateRow,
    ServiceRates,
    service_rates_get,
)
from accounting.selectors.dashboard.tradeoffs import (
    LOWER_IS_BETTER_WORDS,
    TradeoffPoint,
    Tradeoffs,
    tradeoff_point_list,
)

__all__ = [
    "DEFAULT_SERVICE_PERIOD",
    "EXPORT_COLUMNS",
    "GROUP_BY_CHOICES",
    "LOST_STATUSES",
    "LOWER_IS_BETTER_WORDS",
    "OVERHEAD_LABEL",
    "SERVICE_PERIODS",
    "SORT_FIELDS",
    "UTC",
    "YOUNG_JOB_S",
    "BudgetRow",
    "FactorRow",
    "JobListFilters",
    "JobPage",
    "JobRow",
    "Overview",
    "OverviewKpis",
    "Period",
    "SeriesGroup",
    "ServiceHours",
    "ServiceRateRow",
    "ServiceRates",
    "TeamOption",
    "TradeoffPoint",
    "Tradeoffs",
    "UnitEfficiencyRow",
    "fleet_power_get",
    "job_detail_get",
    "job_export_rows",
    "job_list",
    "job_power_get",
    "job_user_option_list",
    "methodology_factor_list",
    "overview_disclosure_get",
    "overview_get",
    "pareto_front",
    "quality_label",
    "report_month_get",
    "report_month_list",
    "running_job_list",
    "service_rates_get",
    "team_budget_list",
    "team_option_list",
    "tradeoff_point_list",
    "viewer_scope_get",
    "whatif_option_get",
]

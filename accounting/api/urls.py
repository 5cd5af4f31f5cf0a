"""v1 API routes (mounted at /api/v1/). The what-if routes are owned by accounting.api.whatif_urls."""

from django.urls import include, path, re_path

from accounting.api import exports_views, fleet_views, instruments_views, reports_views, serving_views, views
from accounting.api.metrics import FormerPathMetricsView

urlpatterns = [
    path("", include("accounting.api.whatif_urls")),
    path("jobs/", views.JobCollectionView.as_view(), name="api-jobs"),
    path("jobs/<int:pk>/", views.JobDetailByIdView.as_view(), name="api-job"),
    path("jobs/<int:pk>/end/", views.JobEndByIdView.as_view(), name="api-job-end"),
    path("jobs/<int:pk>/footprint/", views.JobFootprintByIdView.as_view(), name="api-job-footprint"),
    path("jobs/<int:pk>/units/", views.JobUnitsByIdView.as_view(), name="api-job-units"),
    path("jobs/by-key/<str:scheduler_job_id>/", views.JobDetailByKeyView.as_view(), name="api-job-by-key"),
    path("jobs/by-key/<str:scheduler_job_id>/end/", views.JobEndByKeyView.as_view(), name="api-job-end-by-key"),
    path(
        "jobs/by-key/<str:scheduler_job_id>/footprint/",
        views.JobFootprintByKeyView.as_view(),
        name="api-job-footprint-by-key",
    ),
    path("jobs/by-key/<str:scheduler_job_id>/units/", views.JobUnitsByKeyView.as_view(), name="api-job-units-by-key"),
    path("jobs/<int:pk>/serving/", serving_views.ServingByIdView.as_view(), name="api-job-serving"),
    path(
        "jobs/by-key/<str:scheduler_job_id>/serving/",
        serving_views.ServingByKeyView.as_view(),
        name="api-job-serving-by-key",
    ),
    path("budgets/", views.BudgetCollectionView.as_view(), name="api-budgets"),
    path("budgets/check/", views.BudgetCheckView.as_view(), name="api-budget-check"),
    path("budgets/<int:pk>/", views.BudgetDetailView.as_view(), name="api-budget"),
    path("advice/", views.AdviceView.as_view(), name="api-advice"),
    path("metrics", FormerPathMetricsView.as_view(), name="api-metrics"),
    path("fleet/plan/", fleet_views.FleetPlanView.as_view(), name="api-fleet-plan"),
    path("fleet/apply/", fleet_views.FleetApplyView.as_view(), name="api-fleet-apply"),
    path("exports/job-hours.csv", exports_views.JobHoursCsvView.as_view(), name="api-export-job-hours-csv"),
    path("exports/job-hours.parquet", exports_views.JobHoursParquetView.as_view(), name="api-export-job-hours-parquet"),
    path("exports/jobs.csv", exports_views.JobsCsvView.as_view(), name="api-export-jobs-csv"),
    path("exports/jobs.parquet", exports_views.JobsParquetView.as_view(), name="api-export-jobs-parquet"),
    path("instruments/", instruments_views.InstrumentCollectionView.as_view(), name="api-instruments"),
    path("instruments/<int:pk>/", instruments_views.InstrumentDetailView.as_view(), name="api-instrument"),
    path("residual-mixes/", instruments_views.ResidualMixCollectionView.as_view(), name="api-residual-mixes"),
    path("zone-water/", instruments_views.ZoneWaterCollectionView.as_view(), name="api-zone-water"),
    path("site-wue/", instruments_views.SiteWueCollectionView.as_view(), name="api-site-wue"),
    path("disclosure/", instruments_views.DisclosureView.as_view(), name="api-disclosure"),
    path("reports/<str:month>/", reports_views.ReportView.as_view(), name="api-report"),
    path("reports/<str:month>/deliveries/", reports_views.ReportDeliveriesView.as_view(), name="api-report-deliveries"),
    path("reports/<str:month>/report.html", reports_views.ReportHtmlView.as_view(), name="api-report-html"),
    path("reports/<str:month>/report.pdf", reports_views.ReportPdfView.as_view(), name="api-report-pdf"),
    path("reports/<str:month>/jobs.csv", reports_views.ReportJobsCsvView.as_view(), name="api-report-jobs-csv"),
    path(
        "reports/<str:month>/ledger.parquet",
        reports_views.ReportLedgerParquetView.as_view(),
        name="api-report-ledger-parquet",
    ),
    # Last: anything else under /api/v1/ is a problem-details 404 (e.g. /jobs/1.5/).
    re_path(r"^(?P<unmatched>[\s\S]*)$", views.api_not_found, name="api-not-found"),
]

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("sites/", views.sites, name="sites"),
    path("devices/", views.devices, name="devices"),
    path("jobs/", views.job_list, name="jobs"),
    path("jobs/export.csv", views.job_export, name="jobs-export"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/power.json", views.job_power, name="job-power"),
    path("live/", views.live, name="live"),
    path("live/data.json", views.live_data, name="live-data"),
    path("tradeoffs/", views.tradeoffs, name="tradeoffs"),
    path("planner/", views.planner, name="planner"),
    path("budgets/", views.budgets, name="budgets"),
    path("methodology/", views.methodology, name="methodology"),
    path("reports/", views.reports, name="reports"),
    path("reports/deliveries/", views.report_deliveries, name="report-deliveries"),
    path("reports/subscriptions/", views.report_subscription, name="report-subscription"),
    path("reports/unsubscribe/<str:token>/", views.report_unsubscribe_page, name="report-unsubscribe"),
    path("reports/<int:year>-<int:month>/", views.report_month, name="report-month"),
    path("reports/<int:year>-<int:month>/preview.html", views.report_preview, name="report-preview"),
    path("assets/plotly-<str:version>.min.js", views.plotly_js, name="plotly-js"),
    path("assets/redoc-<str:version>.standalone.js", views.redoc_js, name="redoc-js"),
]

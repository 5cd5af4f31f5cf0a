from django.urls import path

from accounting.api.whatif_views import BestWindowView, EstimateView, FleetPlanView, ProjectJobView

urlpatterns: list = [
    path("estimate/", EstimateView.as_view(), name="whatif-estimate"),
    path("jobs/<int:job_id>/project/", ProjectJobView.as_view(), name="whatif-project-job"),
    path("fleet-plan/", FleetPlanView.as_view(), name="whatif-fleet-plan"),
    path("best-window/", BestWindowView.as_view(), name="whatif-best-window"),
]

from django.urls import path

from telemetry.api.views import BatchIngestView

urlpatterns = [
    path("batches", BatchIngestView.as_view(), name="ingest-batches"),
]

from django.urls import include, path

urlpatterns = [
    path("", include("accounting.api.whatif_urls")),
]

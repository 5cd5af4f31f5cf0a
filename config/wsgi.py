import os

import django

from config.gc_tuning import tune_for_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what django.core.wsgi.get_wsgi_application does

from config.handlers import LeanPathsWSGIHandler  # noqa: E402 - after setup, as Django's own handler

# The agents' ingest endpoint skips the browser middleware (config/handlers.py).
application = LeanPathsWSGIHandler()
tune_for_server()

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo data only: seed_history, demo_setup and demo_scheduler (scripts/run.sh, docker/).

    No model and no URL; the production apps never import it (an import contract in
    pyproject.toml), so the product runs the same without it.
    """

    name = "demo"
    verbose_name = "Demo data"

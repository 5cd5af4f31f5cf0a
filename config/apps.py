from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """The project package as an app: only to connect the session-lifetime signal receiver."""

    name = "config"
    label = "carbonledger_config"
    verbose_name = "CarbonLedger configuration"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from config.security import session_login_record

        user_logged_in.connect(session_login_record, dispatch_uid="carbonledger-session-login")

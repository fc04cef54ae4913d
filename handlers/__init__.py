"""Function glue. Importing it (the function app does) configures telemetry once per process, from the settings:
metrics to Application Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set, and trace ids and redaction on
the log handlers the host installed. It adds no log handler (see core.telemetry: who configures what)."""
__all__ = ["bump", "cluster_feedback", "dashboard", "flux", "generate", "http", "intake", "ops", "outbox", "promotion", "queues", "review"]

from core.settings import SettingsError, get_settings
from core.telemetry import configure_app_telemetry

try:
    _connection = get_settings().appinsights_connection
except SettingsError:
    _connection = ""  # every function answers with the settings error itself; metrics stay in-process meanwhile
configure_app_telemetry(_connection)

"""Function glue. Importing it configures logging and metrics once per worker process (JSON log lines with
trace ids; Application Insights only when APPLICATIONINSIGHTS_CONNECTION_STRING is set)."""
import os

from core.telemetry import configure_telemetry

configure_telemetry(os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", ""))

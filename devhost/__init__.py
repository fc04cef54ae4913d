"""A small local Azure Functions host for the v2 Python model (stands in for Core Tools' `func start`).

    from devhost import DevHost
    with DevHost(function_app.app, host_json, environ) as host:
        ...  # host.url, host.port

CLI: `python -m devhost [--port 7071] [--app function_app] [--settings FILE] [--script-root DIR]`.
"""
from devhost.host import DevHost
from devhost.host_config import HostConfig, HostConfigError, QueueOptions, host_config_from_json, load_host_json
from devhost.local_settings import choose_settings_file, load_local_settings

__all__ = ["DevHost", "HostConfig", "HostConfigError", "QueueOptions", "choose_settings_file", "host_config_from_json",
           "load_host_json", "load_local_settings"]

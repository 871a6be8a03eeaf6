"""Configuration: validated settings from the environment. Knows nothing of the database."""

from jarvis.config.errors import ExitCode, JarvisError
from jarvis.config.secrets import mask_url, redact
from jarvis.config.settings import ConfigError, LogLevel, Settings, load_settings, setting_sources

__all__ = [
    "ConfigError",
    "ExitCode",
    "JarvisError",
    "LogLevel",
    "Settings",
    "load_settings",
    "mask_url",
    "redact",
    "setting_sources",
]

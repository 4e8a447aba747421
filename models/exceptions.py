"""The project's exception hierarchy: every error raised on purpose derives from
:class:`AlertAnomalyError`, so that the CLI can report it as one clear line."""


class AlertAnomalyError(Exception):
    """Base class of every error raised by alert-anomaly on purpose; the CLI prints it as one
    line and exits with ``exit_code``."""

    exit_code = 2


class ConfigurationError(AlertAnomalyError, ValueError):
    """An argument or setting is invalid (unknown class, non-positive count, bad path...)."""


class DataError(AlertAnomalyError):
    """Input data (a table, a file) is missing, malformed or inconsistent."""


class BundleError(AlertAnomalyError):
    """A model bundle cannot be written or loaded (missing file, checksum, version...)."""

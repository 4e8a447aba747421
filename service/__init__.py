"""The alert-anomaly streaming service: consume light-curve classifier records from Kafka,
route each alert to its top-level class's anomaly model, score in micro-batches and publish
anomaly scores."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("alert-anomaly")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

"""What the API and the worker share: settings, database, models, events, delivery."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("taskmanager")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

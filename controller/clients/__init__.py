"""One small typed client per outside system: Spaces, NCA, Airtable and the Kubernetes API."""

from collections.abc import Callable

# Called once per outside request with the system name and the HTTP status, or an error kind
# ("timeout", "connection"); the metrics module counts them.
RequestObserver = Callable[[str, str], None]


def ignore_request(system: str, outcome: str) -> None:
    """The observer used when nobody counts requests (tools and tests)."""

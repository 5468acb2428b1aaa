"""A Python client of the Signet HTTP API: ``Signet(url, api_key)``."""

from signet.client.client import Signet
from signet.client.errors import SignetError
from signet.client.retry import RetryPolicy

__all__ = ["RetryPolicy", "Signet", "SignetError"]

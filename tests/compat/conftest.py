"""The corpus test runs a real engine: the integration fixtures."""

from tests.integration.conftest import settings  # noqa: F401

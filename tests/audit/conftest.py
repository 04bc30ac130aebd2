# The access tests' world: one object of every kind an audited action names.
from tests.access.conftest import world  # noqa: F401

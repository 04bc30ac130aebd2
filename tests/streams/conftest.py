import pytest

from streams import aws
from tests.support.fake_sources import fake_source_create


@pytest.fixture
def fake_source():
    """`fake_source(fake)`: a source read from the fake Streams API `fake`."""
    yield fake_source_create
    aws.forget_clients()

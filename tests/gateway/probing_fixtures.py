"""Fixtures of the probing tests (a pytest plugin: ``pytest_plugins``, never imported)."""

import pytest

from tests.gateway_rig import Publisher


@pytest.fixture
def listener(broker):
    """A client reading every device's acks and tasks (the broker here has no ACL)."""
    pub = Publisher(broker.port)
    pub.subscribe("gridlink/v1/+/+/ack")
    pub.subscribe("gridlink/v1/+/+/task")
    yield pub
    pub.close()

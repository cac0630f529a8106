"""The two targets every conformance scenario runs against: `-k rie` or `-k lambdalet`."""

import pytest

from .harness import lambdalet_target, rie_target


@pytest.fixture(params=["rie", "lambdalet"])
def target(request):
    return rie_target() if request.param == "rie" else lambdalet_target()

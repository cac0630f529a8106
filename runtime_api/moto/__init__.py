"""moto runs Lambda functions' real code through lambdalet, without Docker.

In a test suite's conftest.py (or with the pytest plugin's `--lambdalet-moto`)::

    import runtime_api.moto

    runtime_api.moto.install()

and moto's server with it: `python -m runtime_api.moto [moto_server's arguments]`. What it does and
what it leaves to moto: runtime_api/moto/patches.py and integration.py.
"""

from .integration import Integration
from .patches import install, installed, uninstall

__all__ = ["Integration", "install", "installed", "uninstall"]

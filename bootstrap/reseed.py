"""Random state a SnapStart copy must not share with its template or its siblings.

bootstrap's own per-process state resets itself after a fork, next to that state: the Runtime API
connections (bootstrap/client.py) and the current request id (bootstrap/logs.py) register
`os.register_at_fork` hooks, as CPython's `random` does for its module-level generator, and
OpenSSL from 1.1.1 on reseeds its generators itself in a process whose pid changed (feeding it here
anyway costs every copy half a MiB of pages).

What is left belongs to other libraries: an older OpenSSL's pool and numpy's legacy global
generator. It is reseeded by `reseed()`, which each copy calls once (bootstrap/template.py), not by
at-fork hooks: a hook registered for them would also run in the template's intermediate process and
at every fork of the function's own code, where numpy deliberately does not reseed.
"""

import os
import sys


def reseed():
    ssl = sys.modules.get("ssl")
    if ssl is not None and ssl.OPENSSL_VERSION_INFO < (1, 1, 1):
        ssl.RAND_add(os.urandom(32), 32.0)
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:
            numpy_random.seed()
        except Exception:  # a stand-in module, or numpy without its legacy generator
            pass

"""`python -m runtime_api.moto [ARGS]`: moto's server (`moto_server ARGS`) whose Lambda functions run
through lambdalet."""

import sys

from .patches import install


def main(argv: list[str] | None = None) -> int:
    from moto.server import main as moto_server

    install()
    return moto_server(sys.argv[1:] if argv is None else argv) or 0


if __name__ == "__main__":
    sys.exit(main())

"""lambdalet's benchmarks: stand-alone programs that measure, side by side, lambdalet and the real
AWS parts it replaces, and record the results under benchmarks/results/.

Each module exposes `main(argv=None) -> int` and runs as `python -m benchmarks.<name>` from a checkout.
Installed, this package is `lambdalet_benchmarks` (pyproject.toml: a top-level `benchmarks` would
collide with other projects'), so its modules import one another relatively; `lambdalet bench`
reaches `coldstart.main` through the `lambdalet.commands` entry point.
"""

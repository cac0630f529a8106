"""lambdalet's benchmarks: stand-alone programs that measure, side by side, lambdalet and the real
AWS parts it replaces, and record the results under benchmarks/results/.

Each module exposes `main(argv=None) -> int` and runs as `python -m benchmarks.<name>`.
"""

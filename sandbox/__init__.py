"""Execution environments: launching runtimes, isolation, limits and snapshots."""

"""Executors: where a job's code runs (event loop, thread pool, process pool)."""

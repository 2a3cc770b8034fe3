"""The peer benchmark harness: Redis, worker processes, measurements, reports."""

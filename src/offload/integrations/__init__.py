"""Helpers for the web frameworks offload runs beside.

- :mod:`offload.integrations.watchdog`: notices when an asyncio event loop is blocked and logs
  where (``install()``, ``WatchdogMiddleware`` for ASGI apps).
"""

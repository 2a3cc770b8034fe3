"""Helpers for the web frameworks offload runs beside.

- :mod:`offload.integrations.fastapi`: the job routes mounted in your FastAPI app, the App as
  a dependency, a lifespan with an optional embedded worker, ``accepted()`` for 202 answers.
- :mod:`offload.integrations.flask`: the ``Offload`` extension (job routes as a blueprint,
  ``ext.submit``), threaded or under gevent's ``monkey.patch_all()``.
- :mod:`offload.integrations.watchdog`: notices when an asyncio event loop is blocked and logs
  where (``install()``, ``WatchdogMiddleware`` for ASGI apps).
"""

"""The HTTP API's contract, free of any web framework.

- :mod:`~offload.api.schemas`: the wire models (pydantic) of requests and answers;
- :mod:`~offload.api.errors`: the error table, offload's exceptions to statuses and codes and
  back, and the one error shape ``{"error": {"code", "message", "details"}}``;
- :mod:`~offload.api.auth`: the token table, bearer tokens to tenants and roles.

``offload.service`` (FastAPI glue), ``offload.integrations.flask`` and ``offload.http_client``
all speak through these modules, so the Flask extension needs neither FastAPI nor
prometheus-client. Nothing is imported here: take what you need from the modules.
"""

"""The same "submit a slow job" endpoint, three ways, for http_peers.py.

Each app serves ``POST /jobs`` (body ``{"id": "..."}``, answers 202 with a job id once the job
is accepted) and ``GET /health``. The slow job sleeps ``$PEERS_JOB_SECONDS`` in a blocking call
(a synchronous SDK, ``smtplib``, ``requests``...) and then records its id in the counter
database (``_shared.ran``), so the harness can tell which acknowledged jobs ran, and how often.
"""

"""Helpers for the real-process fault tests, in three rooms.

- :mod:`faultkit.processes`: start, watch and kill worker, API and submitter processes
  (:class:`WorkerProcess`, :func:`wait_until`, the short ``TIMINGS``);
- :mod:`faultkit.ledger`: what the test was promised and what happened (acknowledged jobs,
  injected faults, the runs ledger, reads of the store) and the glue to the history checker;
- :mod:`faultkit.orchestration`: :class:`Faults`, one test's scenario on one backend kind,
  joining the two with the waits a scenario is written with.

The ``faults`` fixture (conftest.py) hands a test one :class:`Faults`, runs the history checker
(:mod:`history`) on it after the test, and cleans it up. Tests record faults other than signals
(the backend down, the network cut) with :meth:`Faults.note_fault`. Everything a test needs is
importable from ``faultkit`` itself.
"""

from history import Fault, Run, Summary

from .ledger import CHECK_SLACK, Ledger, read_ledger, runs_per_job
from .orchestration import FAULTS_PREFIX, KINDS, Faults, drop_namespace, fresh_redis_url
from .processes import (
    APP,
    HERE,
    LEASE,
    REAP,
    TIMINGS,
    Api,
    Processes,
    WorkerProcess,
    pid_gone,
    pid_of,
    session_pids,
    wait_until,
)

__all__ = [
    "APP",
    "CHECK_SLACK",
    "FAULTS_PREFIX",
    "HERE",
    "KINDS",
    "LEASE",
    "REAP",
    "TIMINGS",
    "Api",
    "Fault",
    "Faults",
    "Ledger",
    "Processes",
    "Run",
    "Summary",
    "WorkerProcess",
    "drop_namespace",
    "fresh_redis_url",
    "pid_gone",
    "pid_of",
    "read_ledger",
    "runs_per_job",
    "session_pids",
    "wait_until",
]

"""``offload doctor``: a static scan of a web app for code that blocks its event loop or runs
unbounded work per request, each finding with the offload way to fix it.

The scan parses source files with :mod:`ast` and never imports or runs them. Rules (codes):

- OFF001 a file that could not be parsed
- OFF101-OFF107 blocking calls inside ``async def``: HTTP, sleep, subprocess, SMTP, database
  drivers, sync SDK clients, whole-file reads
- OFF201 a thread started per request; OFF202 a task from ``create_task`` that nobody keeps
- OFF301 a gevent worker without ``monkey.patch_all()`` first
- OFF401, OFF402 CPU-heavy loops and calls in async route handlers

See docs/guide/doctor.md.
"""

from offload.doctor.findings import RULES, Finding, Rule
from offload.doctor.report import Report
from offload.doctor.scan import scan

__all__ = ["RULES", "Finding", "Report", "Rule", "scan"]

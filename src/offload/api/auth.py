"""Bearer tokens: who is calling (tenant) and what they may do (role).

Configuration (``OFFLOAD_TOKENS``, i.e. ``Settings.tokens``) takes one of two forms:

- inline: comma-separated ``TOKEN=TENANT:ROLE`` entries, e.g.
  ``OFFLOAD_TOKENS="s3cr3t-a=acme:admin,s3cr3t-b=acme:read,s3cr3t-c=globex:submit"``
- a file: ``@`` followed by a path, e.g. ``OFFLOAD_TOKENS=@/etc/offload/tokens``; the file
  holds one ``TOKEN=TENANT:ROLE`` entry per line; blank lines and lines starting with ``#``
  are ignored. Keep the file readable by the service only.

Roles, weakest first: ``read`` (read the tenant's jobs, tasks, queues and workers), ``submit``
(read, plus submit jobs), ``admin`` (everything, plus cancel and retry). A tenant never sees
another tenant's jobs: such jobs answer 404, as if they did not exist.

Tokens are compared in constant time: the presented token's SHA-256 digest is compared with
``hmac.compare_digest`` against the digest of *every* configured token, so neither timing nor
early exit tells which token or how much of one matched.

With no tokens configured, every request is the anonymous admin of tenant ``default``; only
safe on a loopback address (the CLI refuses other binds in that case).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from offload.core.job import DEFAULT_TENANT
from offload.errors import ConfigurationError

_TENANT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Role(IntEnum):
    """What a caller may do; a higher role includes the lower ones."""

    READ = 1
    SUBMIT = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    tenant: str
    role: Role
    anonymous: bool = False


ANONYMOUS = Principal(tenant=DEFAULT_TENANT, role=Role.ADMIN, anonymous=True)


class TokenTable:
    """Configured tokens, kept as SHA-256 digests, each mapped to a Principal."""

    def __init__(self, entries: dict[str, Principal] | None = None) -> None:
        self._entries: list[tuple[bytes, Principal]] = [
            (_digest(token), principal) for token, principal in (entries or {}).items()
        ]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (otherwise every caller is anonymous admin)."""
        return bool(self._entries)

    def lookup(self, token: str) -> Principal | None:
        """The principal of ``token``, or None. Constant time in the token's content."""
        presented = _digest(token)
        found: Principal | None = None
        for digest, principal in self._entries:
            if hmac.compare_digest(presented, digest):
                found = principal  # no early exit: every entry is compared
        return found

    @classmethod
    def parse(cls, text: str, *, source: str = "OFFLOAD_TOKENS") -> TokenTable:
        """Parse ``TOKEN=TENANT:ROLE`` entries separated by commas or new lines."""
        entries: dict[str, Principal] = {}
        for raw in re.split(r"[,\n]", text):
            item = raw.strip()
            if not item or item.startswith("#"):
                continue
            token, principal = _parse_entry(item, source)
            if token in entries:
                raise ConfigurationError(f"{source}: a token is listed twice")
            entries[token] = principal
        return cls(entries)

    @classmethod
    def from_setting(cls, value: str | None) -> TokenTable:
        """Tokens from the ``OFFLOAD_TOKENS`` value: inline entries, or ``@path`` to a file."""
        if value is None or not value.strip():
            return cls()
        value = value.strip()
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(f"cannot read tokens file {str(path)!r}: {exc}") from None
            return cls.parse(text, source=str(path))
        return cls.parse(value)


def _parse_entry(item: str, source: str) -> tuple[str, Principal]:
    token, eq, rest = item.partition("=")
    tenant, colon, role_name = rest.partition(":")
    token, tenant, role_name = token.strip(), tenant.strip(), role_name.strip().lower()
    shown = f"{token[:4]}..." if token else "(empty)"
    if not eq or not colon or not token:
        raise ConfigurationError(
            f"{source}: entry for token {shown} must look like TOKEN=TENANT:ROLE"
        )
    if not _TENANT.match(tenant):
        raise ConfigurationError(
            f"{source}: tenant {tenant!r} of token {shown} must be 1-64 of [A-Za-z0-9._-]"
        )
    try:
        role = Role[role_name.upper()]
    except KeyError:
        raise ConfigurationError(
            f"{source}: role {role_name!r} of token {shown} must be admin, submit or read"
        ) from None
    return token, Principal(tenant=tenant, role=role)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

"""A local SMTP sink: accepts every message and writes it to ``--outbox`` as ``<n>.eml``.

Just enough SMTP (RFC 5321) for ``smtplib``: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, on
asyncio streams. Nothing is relayed anywhere: it is the mail server of the demo and the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
from pathlib import Path

MAX_MESSAGE = 1_048_576


class Sink:
    """Writes each accepted message to ``outbox`` (atomically: a temp file, then a rename)."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(1 + len(list(outbox.glob("*.eml"))))

    def store(self, sender: str, recipients: list[str], data: bytes) -> str:
        number = next(self._numbers)
        envelope = f"X-Sink-From: {sender}\r\nX-Sink-To: {', '.join(recipients)}\r\n".encode()
        path = self.outbox / f"{number:06d}.eml"
        temp = path.with_suffix(".tmp")
        temp.write_bytes(envelope + data)
        os.replace(temp, path)
        return path.name

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        sender = ""
        recipients: list[str] = []
        try:
            await reply("220 smtpsink ready")
            while line := await reader.readline():
                verb, _, arg = line.decode("latin-1").strip().partition(" ")
                verb = verb.upper()
                if verb in ("EHLO", "HELO"):
                    await reply("250 smtpsink")
                elif verb == "MAIL":
                    sender, recipients = arg.partition(":")[2].strip(" <>"), []
                    await reply("250 OK")
                elif verb == "RCPT":
                    recipients.append(arg.partition(":")[2].strip(" <>"))
                    await reply("250 OK")
                elif verb == "DATA":
                    await reply("354 end with <CRLF>.<CRLF>")
                    data = await read_data(reader)
                    await reply(f"250 OK queued as {self.store(sender, recipients, data)}")
                elif verb in ("RSET", "NOOP"):
                    sender, recipients = ("", []) if verb == "RSET" else (sender, recipients)
                    await reply("250 OK")
                elif verb == "QUIT":
                    await reply("221 bye")
                    break
                else:
                    await reply("502 command not implemented")
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def read_data(reader: asyncio.StreamReader) -> bytes:
    """The message up to the lone ``.`` line, with dot-stuffing undone."""
    lines: list[bytes] = []
    size = 0
    while (line := await reader.readline()) not in (b".\r\n", b".\n", b""):
        line = line[1:] if line.startswith(b"..") else line
        size += len(line)
        if size > MAX_MESSAGE:
            raise ValueError("message too large")
        lines.append(line)
    return b"".join(lines)


async def serve(port: int, outbox: Path) -> None:
    server = await asyncio.start_server(Sink(outbox).session, "127.0.0.1", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--outbox", type=Path, default=Path("data/outbox"))
    ns = parser.parse_args()
    asyncio.run(serve(ns.port, ns.outbox))


if __name__ == "__main__":
    main()

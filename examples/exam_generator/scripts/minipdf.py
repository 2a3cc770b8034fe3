"""Step 3 WITHOUT LaTeX: a pure-Python stand-in for ``xelatex``, used when no TeX is installed.

    python minipdf.py DIR          # reads DIR/exam.tex, writes DIR/exam.pdf

It understands only what ``render.py`` writes (title, section headings, enumerate items) and
writes a small, valid PDF 1.4 by hand: Helvetica text, one object per page and content stream,
an exact cross-reference table. Every page says that it was made by this stand-in.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

LABEL = "Typeset by minipdf.py, the pure-Python stand-in for LaTeX (no TeX installed)"
LINES_PER_PAGE = 48
TOP, LEFT, LEADING = 800, 56, 15


def lines_of(tex: str) -> list[tuple[int, str]]:
    """(font size, text) lines from the LaTeX ``render.py`` writes."""
    out: list[tuple[int, str]] = []
    number = 0
    for raw in tex.splitlines():
        if m := re.match(r"\\title\{(.*)\}$", raw):
            out += [(18, plain(m[1])), (9, LABEL), (11, "")]
        elif m := re.match(r"\\section\*\{(.*)\}$", raw):
            out += [(11, ""), (14, plain(m[1]))]
            number = 0
        elif raw.startswith("\\item "):
            number += 1
            out.append((11, f"{number}. {plain(raw.removeprefix(chr(92) + 'item '))}"))
    return out


def plain(text: str) -> str:
    text = text.replace("\\times", "x").replace("$", "")
    return re.sub(r"\\(.)", r"\1", text)


def pdf(lines: list[tuple[int, str]]) -> bytes:
    pages = [lines[i : i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)] or [[]]
    # objects 1: catalog, 2: page tree, 3: font; then a page and its content stream per page
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, page in enumerate(pages):
        stream = content(page, footer=f"{LABEL} - page {i + 1} of {len(pages)}")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def content(lines: list[tuple[int, str]], footer: str) -> bytes:
    ops = ["BT", f"{LEFT} {TOP} Td"]
    for size, text in lines:
        ops += [f"/F1 {size} Tf", f"({pdf_string(text)}) Tj", f"0 -{LEADING + size - 11} Td"]
    ops += ["ET", "BT", f"/F1 8 Tf {LEFT} 30 Td ({pdf_string(footer)}) Tj", "ET"]
    return "\n".join(ops).encode("latin-1")


def pdf_string(text: str) -> str:
    text = text.encode("latin-1", "replace").decode("latin-1")
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    ns = parser.parse_args()
    document = pdf(lines_of((ns.folder / "exam.tex").read_text()))
    temp = ns.folder / "exam.pdf.tmp"
    temp.write_bytes(document)
    os.replace(temp, ns.folder / "exam.pdf")


if __name__ == "__main__":
    main()

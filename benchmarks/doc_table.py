"""Rewrite the generated part of a doc: the text between two HTML comment markers."""

from __future__ import annotations

from pathlib import Path


def replace_between(path: Path, start: str, end: str, text: str) -> None:
    doc = path.read_text()
    if start not in doc or end not in doc:
        raise SystemExit(f"{path}: no {start} ... {end} markers")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + start + "\n" + text + "\n" + end + tail)


def show(text: str, write: bool, path: Path, start: str, end: str) -> None:
    """Print a generated table; with --write, also put it between its markers in the doc."""
    print(text)
    if write:
        replace_between(path, start, end, text)
        print(f"\nwrote {path}")

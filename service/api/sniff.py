"""Recognise video containers by their first bytes, so a text file is refused before it is stored."""

from __future__ import annotations

from pathlib import Path

_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "mp4"),  # ISO BMFF: mp4, mov, m4v, 3gp
    (4, b"moov", "mov"),
    (4, b"mdat", "mov"),
    (4, b"wide", "mov"),
    (0, b"\x1a\x45\xdf\xa3", "mkv"),  # EBML: Matroska, WebM
    (0, b"RIFF", "avi"),
    (0, b"FLV", "flv"),
    (0, b"OggS", "ogv"),
    (0, b"\x00\x00\x01\xba", "mpg"),  # MPEG program stream
    (0, b"\x00\x00\x01\xb3", "mpg"),
    (0, b"\x47", "ts"),  # MPEG transport stream sync byte (checked again at 188)
)


def sniff_container(path: Path) -> str | None:
    """The container's usual extension, or None if the file does not start like a video."""
    with path.open("rb") as handle:
        head = handle.read(192)
    for offset, magic, ext in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            if ext == "ts" and head[188:189] != b"\x47":
                continue
            return ext
    return None

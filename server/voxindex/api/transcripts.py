"""Transcript export formats. Pure functions of stored segments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Span(Protocol):
    """A stretch of transcript: a stored segment, or a segment of an offline transcript."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...


FORMATS = {"json": "application/json", "txt": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}


def to_txt(segments: Sequence[Span]) -> str:
    return "".join(s.text + "\n" for s in segments)


def clock(seconds: float, sep: str = ".") -> str:
    """HH:MM:SS<sep>mmm, as subtitles and the CLI print times."""
    ms = round(max(0.0, seconds) * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: Sequence[Span]) -> str:
    blocks = [
        f"{n}\n{clock(s.start, ',')} --> {clock(max(s.end, s.start + 0.001), ',')}\n{s.text}\n"
        for n, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Span]) -> str:
    cues = [
        f"{clock(s.start, '.')} --> {clock(max(s.end, s.start + 0.001), '.')}\n{s.text}\n" for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(cues)

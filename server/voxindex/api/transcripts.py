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

    @property
    def speaker(self) -> int | None: ...


def said(s: Span) -> str:
    """The segment's text, after its speaker where it has one ("Speaker 0: …")."""
    return s.text if s.speaker is None else f"Speaker {s.speaker}: {s.text}"


FORMATS = {"json": "application/json", "txt": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}


def to_txt(segments: Sequence[Span]) -> str:
    return "".join(said(s) + "\n" for s in segments)


def clock(seconds: float, sep: str = ".") -> str:
    """HH:MM:SS<sep>mmm, as subtitles and the CLI print times."""
    ms = round(max(0.0, seconds) * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: Sequence[Span]) -> str:
    blocks = [
        f"{n}\n{clock(s.start, ',')} --> {clock(max(s.end, s.start + 0.001), ',')}\n{said(s)}\n"
        for n, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Span]) -> str:
    cues = [
        f"{clock(s.start, '.')} --> {clock(max(s.end, s.start + 0.001), '.')}\n{_voiced(s)}\n"
        for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def _voiced(s: Span) -> str:
    """A WebVTT cue's text, in a voice span where it has a speaker (``<v Speaker 0>…``)."""
    text = s.text.replace("&", "&amp;").replace("<", "&lt;")
    return text if s.speaker is None else f"<v Speaker {s.speaker}>{text}"

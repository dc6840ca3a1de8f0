"""Who said each word: a timeline of speaker spans, and the words labelled from it.

A span is a stretch of voiced audio one speaker label covers. A word takes the label that
overlaps it most (or, in a gap between spans, the nearest span's); a final's speaker is the
label of most of its words' time. A speaker change inside an utterance changes the words'
labels, never the text.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

from voxindex.engine.types import Word

MERGE_GAP_S = 0.3  # spans of one speaker closer than this become one


@dataclass
class Span:
    start: float
    end: float
    speaker: int
    confidence: float


class Timeline:
    """Spans in time order. ``forget_before`` keeps it bounded in a live stream."""

    def __init__(self) -> None:
        self.spans: deque[Span] = deque()

    def add(self, start: float, end: float, speaker: int, confidence: float) -> None:
        last = self.spans[-1] if self.spans else None
        if last is not None and last.speaker == speaker and start - last.end <= MERGE_GAP_S:
            n = max(last.end - last.start, 1e-3), max(end - start, 1e-3)
            last.confidence = (last.confidence * n[0] + confidence * n[1]) / (n[0] + n[1])
            last.end = max(last.end, end)
        else:
            self.spans.append(Span(start, end, speaker, confidence))

    def forget_before(self, t: float) -> None:
        while len(self.spans) > 1 and self.spans[0].end < t:
            self.spans.popleft()

    @property
    def until(self) -> float:
        return self.spans[-1].end if self.spans else 0.0

    def at(self, start: float, end: float) -> Span | None:
        """The span overlapping [start, end] most, else the nearest one."""
        best: Span | None = None
        overlap = 0.0
        for span in self.spans:
            o = min(end, span.end) - max(start, span.start)
            if o > overlap:
                best, overlap = span, o
        if best is not None or not self.spans:
            return best
        mid = (start + end) / 2
        return min(self.spans, key=lambda s: max(s.start - mid, mid - s.end))

    def label(self, words: list[Word]) -> list[Word]:
        out = []
        for w in words:
            span = self.at(w.start, max(w.end, w.start + 0.01))
            if span is None:
                out.append(w)
            else:
                out.append(
                    dataclasses.replace(w, speaker=span.speaker, speaker_confidence=round(span.confidence, 3))
                )
        return out


def dominant(words: list[Word]) -> int | None:
    """The label of most of the words' time (ties: the earlier speaker)."""
    time: dict[int, float] = {}
    for w in words:
        if w.speaker is not None:
            time[w.speaker] = time.get(w.speaker, 0.0) + max(w.end - w.start, 0.01)
    if not time:
        return None
    return max(sorted(time), key=lambda k: time[k])

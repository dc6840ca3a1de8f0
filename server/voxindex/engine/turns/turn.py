"""One turn-taking stream's current turn: its pauses, the evidence gathered at each, and the
turn events it sends (``events.TurnInfo``).

A turn starts with the utterance's speech. At its first silent VAD chunk a pause begins and
the scheduler reads the turn up to it at once, ahead of every interim (``needs_reading``: the
reading is the slow part, so it starts before the pause is known to be one); from ``PAUSE_S``
of silence the acoustic model hears it (``needs_acoustic``, off the engine's thread) and, once
both are in, every new chunk of silence re-judges it (fusion.end_of_turn_probability). At
``eager_threshold`` the turn's transcript goes out as ``EagerEndOfTurn``; at ``eot_threshold``
the turn ends, its final being that same reading, so ``EndOfTurn`` waits for no model call and
carries the eager transcript word for word. Voice before then resumes the turn
(``TurnResumed`` if an eager end was sent). Pause words are frozen once read: the words an
eager end showed are the words the turn ends with, unless it resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from voxindex.engine.events import Event, TurnEvent, TurnInfo
from voxindex.engine.turns.fusion import end_of_turn_probability
from voxindex.engine.turns.lexical import lexical_logit
from voxindex.engine.types import TurnOptions, Word
from voxindex.engine.vad import CHUNK_S

log = logging.getLogger("voxindex.engine")

READ_AFTER_S = CHUNK_S  # silence after the voice before the turn is read up to it, in case
PAUSE_S = 0.1  # silence after the voice before a pause is judged (and heard by the acoustic model)
UPDATE_EVERY_S = 0.25  # an Update per this much audio of an open turn (Flux's cadence)
ACOUSTIC_WINDOW_S = 8.0  # the audio the acoustic model reads, up to the pause


@dataclass
class Pause:
    speech_end: float  # where the voice stopped
    acoustic: float | None = None  # Smart Turn's probability, once run (None: not installed)
    asked: bool = False  # the acoustic model has the pause's audio
    heard: bool = False  # the acoustic evidence is in
    words: list[Word] | None = None  # the turn's last words, read up to the pause
    lexical: float = 0.0
    probability: float = 0.0  # the latest end-of-turn probability
    eager: bool = False  # an eager end of turn was sent for this pause


class Turn:
    def __init__(self, options: TurnOptions, emit: Callable[[Event, float | None], None]) -> None:
        self.options = options
        self.index = 0  # turns ended so far
        self.open = False
        self.start = 0.0
        self.said: list[Word] = []  # finals this turn already sent (a full window, long sentences)
        self.pause: Pause | None = None
        self.held: Pause | None = None  # a read pause the voice came back after: its words stand
        self._next_update = 0.0
        self._emit = emit

    def needs_acoustic(self, now: float) -> bool:
        """Whether the pause, at stream time ``now``, is long enough for the acoustic model
        (``PAUSE_S``) and not yet heard by it."""
        pause = self.pause
        return pause is not None and not pause.asked and not pause.heard and now - pause.speech_end >= PAUSE_S

    @property
    def needs_reading(self) -> bool:
        return self.pause is not None and self.pause.words is None

    @property
    def frozen(self) -> bool:
        """Whether the pause's words are read: no interim reading until the voice returns."""
        return self.pause is not None and self.pause.words is not None

    def begin(self, at: float) -> None:
        self.open, self.start, self.said, self.pause = True, at, [], None
        self._next_update = at + UPDATE_EVERY_S
        self._send(TurnEvent.STARTED, at, [])

    def heard(self, t: float, last_voice: float, words: list[Word]) -> None:
        """A chunk ending at ``t`` was interpreted; the voice was last heard at ``last_voice``;
        ``words``: the turn's words so far (for its Updates)."""
        if not self.open:
            return
        pause = self.pause
        if pause is not None and last_voice > pause.speech_end:
            self.pause = None
            if pause.words:
                self.held = pause
            if pause.eager:
                self._send(TurnEvent.RESUMED, t, self.said + words)
        if self.pause is None and t - last_voice >= READ_AFTER_S - 1e-9:
            self.pause = Pause(last_voice, heard=self.options.evidence == "silence")
        if t >= self._next_update:
            self._next_update = t + UPDATE_EVERY_S
            shown = self.pause.words if self.pause is not None and self.pause.words is not None else words
            self._send(TurnEvent.UPDATE, t, self.said + shown)

    def take_held(self) -> Pause | None:
        held, self.held = self.held, None
        return held

    def acoustic(self, probability: float | None, speech_end: float) -> None:
        if self.pause is not None and self.pause.speech_end == speech_end:
            self.pause.acoustic, self.pause.heard = probability, True

    def read(self, words: list[Word], closing: float | None) -> None:
        """The turn's words as a reading up to the pause heard them (``closing``: the decoder's
        probability for the mark that closed them)."""
        if self.pause is not None and self.pause.words is None:
            self.pause.words = words
            self.pause.lexical = lexical_logit(self.said + words, closing)

    def judge(self, now: float) -> bool:
        """Judge the pause at stream time ``now``: send an eager end when it is probably the
        end; return whether the turn ends here."""
        pause = self.pause
        silence = now - pause.speech_end if pause is not None else 0.0
        if pause is None or pause.words is None or silence < PAUSE_S:
            return False
        if not pause.heard:  # an eager end may go on the words and the silence; an end may not
            acoustic = None if self.options.evidence == "fused" else 0.0
            p = end_of_turn_probability(acoustic, pause.lexical, silence, self.options.evidence)
            self._eager(pause, p)
            return False
        if pause.probability == 0.0:
            _log("pause at %.2f judged", pause.speech_end, pause, silence)
        p = end_of_turn_probability(pause.acoustic, pause.lexical, silence, self.options.evidence)
        pause.probability = p
        self._eager(pause, p)  # also right before an end of turn: a client may act on either
        if p >= self.options.eot_threshold:
            _log("end of turn %d", self.index, pause, silence)
            return True
        return False

    def _eager(self, pause: Pause, p: float) -> None:
        """An eager end of turn for ``pause`` once its probability ``p`` reaches the threshold."""
        eager = self.options.eager_threshold
        if (
            eager is not None
            and p >= eager
            and not pause.eager
            and pause.words is not None
            and (self.said or pause.words)
        ):
            pause.eager = True
            pause.probability = p
            self._send(TurnEvent.EAGER_END, pause.speech_end, self.said + pause.words, since=pause.speech_end)

    def final_words(self, speech_end: float) -> list[Word] | None:
        """The words the turn's final has, if a pause ending at ``speech_end`` read them."""
        pause = self.pause
        return pause.words if pause is not None and pause.speech_end == speech_end else None

    def finalized(self, words: list[Word]) -> None:
        self.said = self.said + words

    def end(self, until: float) -> None:
        """The turn is over: ``EndOfTurn`` with every word of it."""
        if not self.open:
            return
        p = self.pause.probability if self.pause is not None else 0.0  # forced: by a flush, the close
        self._send(TurnEvent.END, until, self.said, probability=p, since=until)
        self.open, self.pause, self.said = False, None, []
        self.index += 1

    def configure(self, options: TurnOptions) -> None:
        """New thresholds (the client's); what decides stays the server's."""
        self.options = replace(options, evidence=self.options.evidence)

    def _send(
        self,
        event: TurnEvent,
        end: float,
        words: list[Word],
        probability: float | None = None,
        since: float | None = None,
    ) -> None:
        p = probability if probability is not None else (self.pause.probability if self.pause else 0.0)
        start = words[0].start if words else self.start
        info = TurnInfo(event, self.index, round(min(start, end), 3), round(end, 3), list(words), round(p, 4))
        self._emit(info, since)


def _log(what: str, arg: float, pause: Pause, silence: float) -> None:
    """A pause's evidence, for tuning (debug level): ``what`` % ``arg``, then the evidence."""
    if log.isEnabledFor(logging.DEBUG):
        acoustic = "none" if pause.acoustic is None else f"{pause.acoustic:.3f}"
        words = " ".join(w.word for w in (pause.words or [])[-4:])
        log.debug(
            f"{what} after %.2f s of silence: p=%.2f (acoustic %s, lexical %.2f) %r",
            arg, silence, pause.probability, acoustic, pause.lexical, words,
        )  # fmt: skip

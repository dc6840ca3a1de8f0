"""One stream's utterance as a state machine: VAD decisions → start and end → confirmed words
and tail → the ``Final``.

The scheduler feeds it audio with VAD decisions (``hear``), readings (``read``) and turns
(``interpret``, ``close``), asks it what it needs (``needs_final_reading``, ``wants_interim``,
``window``) and takes the events it emits (``take_events``). It never reads the model and never
touches the store; everything about one utterance's life is here:

- QUIET → SPEAKING when the endpointer hears a run of speech (``SpeechStarted``); audio before
  the pre-roll is forgotten;
- SPEAKING: each accepted reading confirms the words two readings agree on (LocalAgreement-2)
  and shows the rest as the tail (``Interim``); in long unbroken speech, whole confirmed
  sentences become finals;
- SPEAKING → ENDING when the utterance should end (``Ending``): the endpointer's silence, a
  flush, the close of the stream, or a window about to overflow; on a turn-taking stream
  (``StreamOptions.turns``) the end of the speaker's turn (``turns.turn.Turn`` judges each
  pause; an utterance is then a turn, and pauses inside it end nothing);
- ENDING → QUIET (or SPEAKING again, after a flush or a full window) with the ``Final``, made
  from a reading that heard the whole utterance (``policy.final_words``).
"""

from __future__ import annotations

import enum
from collections import deque
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from voxindex.audio import SAMPLE_RATE, Float32Array
from voxindex.engine.events import Event, Final, Flushed, Interim, SpeechEnded, SpeechStarted
from voxindex.engine.held_audio import HeldAudio
from voxindex.engine.policy import agreed_prefix, final_words, join_words, last_sentence_end, past_confirmed
from voxindex.engine.prompting import StreamPrompt
from voxindex.engine.reading import MAX_WINDOW_AUDIO_S, Reading
from voxindex.engine.turns.turn import PAUSE_S, READ_AFTER_S, Pause, Turn
from voxindex.engine.types import StreamOptions, TurnOptions, Word
from voxindex.engine.vad import CHUNK, CHUNK_S, Endpointer, VadState

PREROLL_S = 0.8  # audio kept before detected speech: onsets are soft, VAD needs ~100 ms, and Whisper
# misreads a first word it hears with too little before it ("old-sposed", BENCHMARKS.md "accuracy")
MAX_UTTERANCE_S = 25.0  # force a final before the window (30 s) is full
SENTENCE_FINAL_AFTER_S = 8.0  # in long unbroken speech, finalize confirmed sentences past this
ENDPOINT_TAIL_S = 0.3  # audio kept after the last voiced chunk when reading an ended utterance
TURN_INTERIM_S = 1.5  # a turn's interim readings at most this often: its pauses are read anyway
FRESH_MARGIN_S = 0.1  # a reading that heard this far past the end of speech serves as the final


class Phase(enum.IntEnum):
    QUIET = 0  # no utterance
    SPEAKING = 1  # an utterance is heard; interim readings follow it
    ENDING = 2  # its end is decided; the final waits for a reading of the whole utterance


class Ending(enum.Enum):
    """Why an utterance ends (a ``Final``'s ``reason``)."""

    ENDPOINT = "endpoint"
    TURN = "end_of_turn"  # a turn-taking stream's turn is over
    FLUSH = "flush"
    CLOSE = "close"
    WINDOW = "window"


class Emitted(NamedTuple):
    """An event, and the stream time its latency is measured from (the onset of speech for an
    utterance's first interim, the end of speech for a final), if any."""

    event: Event
    since: float | None = None


class Utterance:
    def __init__(self, options: StreamOptions, prompt: StreamPrompt) -> None:
        self.options = options
        self.prompt = prompt  # own past text after the key terms and context
        self.audio = HeldAudio()
        self.vad = VadState()  # the VAD network's state for this stream
        # a turn-taking stream's utterance is a turn: silence alone ends it only at the timeout
        self.turn = Turn(options.turns, self._emit) if options.turns is not None else None
        silence = options.turns.eot_timeout_s if options.turns is not None else options.endpointing_ms / 1000
        self.endpointer = Endpointer(silence, options.vad_threshold)
        self.phase = Phase.QUIET
        self.ending: Ending | None = None  # set while ENDING
        self.speech_end: float | None = None  # when the ending utterance stopped being voiced
        self.language: str | None = None  # detected ("auto"), else the stream's
        self.segment_id = 0
        self.finals = 0
        # VAD decisions not yet interpreted: (probability, chunk end time)
        self._decisions: deque[tuple[float, float]] = deque()
        self.vad_samples = 0  # audio the VAD decided on
        self._seen = -1  # ``audio.received`` when decisions were last interpreted
        self.heard = 0.0  # stream time up to which decisions are interpreted
        self._final_until = 0.0  # the end of the audio the final reading reads
        self._confirmed: list[Word] = []  # words two readings agreed on: never retracted
        self._tail: list[Word] = []  # the latest reading past the confirmed words
        # the latest reading's words from audio.start (the whole utterance as far as it heard),
        # or None when that reading was rejected: the final's words come from here
        self._heard_words: list[Word] | None = None
        self._said: list[Word] = []  # last words of sentences finalized mid-utterance
        self.read_until = 0.0  # stream time the latest reading had heard up to
        # the latest accepted reading's audio.start and tokens: the next one's draft (``draft``)
        self._draft: tuple[float, tuple[int, ...]] = (-1.0, ())
        self._last_interim = ""
        self._onset: float | None = None  # the utterance's start, until its first interim
        self._flushed = False  # a flush is done once the utterance it ends is final: ``Flushed``
        self._events: list[Emitted] = []

    # ---------------- what the scheduler asks ----------------
    @property
    def received(self) -> int:
        return self.audio.received

    @property
    def pending_decisions(self) -> int:
        return len(self._decisions)

    @property
    def has_news(self) -> bool:
        """Whether decisions wait or audio came since they were last interpreted."""
        return bool(self._decisions) or self.audio.received != self._seen

    @property
    def unread_s(self) -> float:
        """Audio of the utterance heard but not yet read by the model."""
        if self.phase == Phase.QUIET:
            return 0.0
        return max(0.0, self.audio.now - max(self.read_until, self.audio.start))

    @property
    def final_is_fresh(self) -> bool:
        """Whether the latest reading already heard the whole ending utterance and was
        accepted (or the turn's pause was read), so the final needs no model call."""
        if self.ending not in (Ending.ENDPOINT, Ending.TURN, Ending.FLUSH) or self.speech_end is None:
            return False
        if self.turn is not None and self.turn.final_words(self.speech_end) is not None:
            return True
        return (
            self.ending != Ending.FLUSH
            and self._heard_words is not None
            and self.read_until >= self.speech_end + FRESH_MARGIN_S
        )

    @property
    def needs_final_reading(self) -> bool:
        return self.phase == Phase.ENDING and not self.final_is_fresh

    def needs_pause_reading(self, early: bool = True) -> bool:
        """Whether a turn's pause waits for a reading of the turn up to it (as urgent as a final:
        it is the final if the turn ends there); not ``early``: only once it is ``PAUSE_S`` long."""
        if self.phase != Phase.SPEAKING or self.turn is None or not self.turn.needs_reading:
            return False
        assert self.turn.pause is not None
        return early or self.heard - self.turn.pause.speech_end >= PAUSE_S

    @property
    def needs_acoustic(self) -> bool:
        return self.phase == Phase.SPEAKING and self.turn is not None and self.turn.needs_acoustic(self.heard)

    def wants_interim(self, interval: float) -> bool:
        """Whether ``interval`` seconds of speech arrived since the latest reading (never while
        a turn's pause waits for its reading or has it: nothing new was said)."""
        if self.turn is not None:
            if self.turn.frozen or self.turn.needs_reading:
                return False
            interval = max(interval, TURN_INTERIM_S)
        return (
            self.phase == Phase.SPEAKING and self.heard - max(self.read_until, self.audio.start) >= interval
        )

    def interim_is_stale(self, reading_end: float, early: bool = True) -> bool:
        """Whether an interim reading in flight (of audio up to ``reading_end``) is of no use
        now that the utterance is ending: it is, unless it hears the end of speech."""
        if self.turn is not None and self.turn.needs_reading and self.ending in (None, Ending.FLUSH):
            assert self.turn.pause is not None
            due = self.ending is not None or self.needs_pause_reading(early)
            return due and reading_end < self._pause_heard_from()
        if self.phase != Phase.ENDING:
            return False
        hears_end = reading_end >= (self.speech_end or 0.0) + FRESH_MARGIN_S
        return not (self.ending in (Ending.ENDPOINT, Ending.TURN) and hears_end)

    def window(self) -> tuple[float, float]:
        """The stream times the next reading reads: the utterance so far, or past its end."""
        until = self._final_until if self.phase == Phase.ENDING else self.heard
        return self.audio.start, min(until, self.audio.start + MAX_WINDOW_AUDIO_S, self.audio.now)

    def draft(self, start: float) -> tuple[int, ...]:  # the runner checks it: Runner._take_draft
        return self._draft[1] if self._draft[0] == start else ()  # ``start``'s likely first tokens

    def take_events(self) -> list[Emitted]:
        if self._flushed and self.phase != Phase.ENDING:
            self._flushed = False
            self._emit(Flushed(round(self.heard, 3)))
        events, self._events = self._events, []
        return events

    # ---------------- fed by the scheduler ----------------
    def hear(self, audio: Float32Array, probs: Float32Array | None) -> Float32Array:
        """New audio and its VAD probabilities, one per whole 32 ms chunk (``None``: no VAD,
        every chunk is speech). Returns the probabilities."""
        self.audio.append(audio)
        if probs is None:
            n = (self.vad_samples % CHUNK + audio.size) // CHUNK
            probs = np.ones(n, np.float32)
        first = self.vad_samples // CHUNK
        for k, prob in enumerate(probs):
            self._decisions.append((float(prob), (first + k + 1) * CHUNK / SAMPLE_RATE))
        self.vad_samples += len(probs) * CHUNK
        return probs

    def interpret(self, flush: bool = False, turns: TurnOptions | None = None) -> None:
        """Interpret queued VAD decisions, pausing while the utterance awaits its final; a
        ``flush`` ends the utterance being heard; ``turns``: new turn thresholds."""
        if turns is not None:
            self.configure(turns)
        self._seen = self.audio.received
        while self.phase != Phase.ENDING and self._decisions:
            prob, t = self._decisions.popleft()
            self.heard = t
            began, ended = self.endpointer.update(prob, t)
            if began is not None:
                self._start(began)
            if ended is not None and self.phase == Phase.SPEAKING:
                self._end_of_speech(ended)
            elif self.phase == Phase.SPEAKING and t - self.audio.start >= MAX_UTTERANCE_S:
                self._end(Ending.WINDOW, t)
            elif self.phase == Phase.SPEAKING and self.turn is not None:
                self.turn.heard(t, self.endpointer.last_voice, self._confirmed + self._tail)
                self._hold(self.turn.take_held(), t)
                self._judge_turn()
        if self.phase == Phase.QUIET:
            self.audio.drop_before(self.heard - PREROLL_S)
        self._flushed = self._flushed or flush
        if flush and self.phase == Phase.SPEAKING:
            # a turn forced to end in a pause ends where the voice stopped, with the pause's
            # reading (done or in flight): no model call of its own
            pause = self.turn.pause if self.turn is not None else None
            self._end(Ending.FLUSH, pause.speech_end if pause is not None else self.heard)

    def hear_acoustic(self, probability: float | None, speech_end: float) -> None:
        """The acoustic model's end-of-turn probability for the pause after speech that ended at
        ``speech_end`` (None: no model runs); a pause that is over by now ignores it."""
        if self.turn is not None and self.phase == Phase.SPEAKING:
            self.turn.acoustic(probability, speech_end)
            self._judge_turn()

    def configure(self, turns: TurnOptions) -> None:
        """New turn thresholds, from the next judgement on."""
        if self.turn is not None:
            self.turn.configure(turns)
            self.endpointer.endpointing_s = turns.eot_timeout_s

    def close(self) -> bool:
        """The stream's audio is over and interpreted: end the utterance being heard. Returns
        whether nothing is left to finalize."""
        if self.phase == Phase.SPEAKING:
            self._end(Ending.CLOSE, self.audio.now)
            return False
        return self.phase == Phase.QUIET

    def read(self, reading: Reading, reading_end: float, final: bool) -> bool:
        """A reading of the audio up to ``reading_end``. ``final``: it was scheduled for the
        ending utterance. An interim reading admitted before the utterance ended only updates
        the interim; the final gets a reading of its own (or this one, if it already heard the
        end: ``final_is_fresh``). Returns whether it made the final."""
        self.read_until = reading_end
        if reading.language and self.options.language in (None, "auto"):
            self.language = self.language or reading.language
        self._heard_words = None if reading.rejected else reading.words
        if not reading.rejected:
            self._draft = (self.audio.start, tuple(reading.tokens))
        if final and self.phase == Phase.ENDING:
            self.finalize()
            return True
        if not reading.rejected:  # a rejected reading heard nothing: the interim stands
            new = past_confirmed(self._confirmed, reading.words)
            agreed = agreed_prefix(self._tail, new)
            self._confirmed += new[:agreed]
            self._tail = new[agreed:]
            self._send_interim()
            if self.phase == Phase.SPEAKING:
                self._finalize_long_sentences()
        if self.turn is not None and self.turn.needs_reading and reading_end >= self._pause_heard_from():
            self._read_pause(reading)
        return False

    def finalize(self) -> None:
        """Send the ending utterance's final from the latest reading (``policy.final_words``)."""
        ending, heard = self.ending, self._heard_words
        if ending == Ending.WINDOW and self._confirmed:
            # the confirmed words, and whole sentences the window's reading heard past them;
            # keep the rest for the next segment: it may end in a word cut in half
            rest = past_confirmed(self._confirmed, heard) if heard else self._tail
            sentences = last_sentence_end(rest) if heard else 0
            words, rest = self._confirmed + rest[:sentences], rest[sentences:]
            cut = rest[0].start if rest else self._final_until
        else:
            until = self.speech_end if self.speech_end is not None else self.heard
            read = self.turn.final_words(until) if self.turn is not None else None
            words = read if read is not None else self._final_candidate(heard, until)
            cut = self._final_until
        self._emit_final(words, ending.value if ending is not None else "close", self.speech_end)
        self._forget_words()
        self.audio.drop_before(min(cut, self.audio.now))
        self.read_until = self.audio.start
        self.ending = None
        turn_over = self.turn is not None and ending in (Ending.TURN, Ending.FLUSH, Ending.CLOSE)
        if turn_over and self.turn is not None:
            self.turn.end(self.speech_end if self.speech_end is not None else self.heard)
            self.endpointer.in_speech = False  # what is said next is a new turn, from its start
        if ending in (Ending.ENDPOINT, Ending.CLOSE) or turn_over:
            self.phase = Phase.QUIET
            if ending in (Ending.ENDPOINT, Ending.TURN):
                self._emit(SpeechEnded(round(self.speech_end or self.heard, 3)))
        else:
            self.phase = Phase.SPEAKING

    # ---------------- transitions ----------------
    def _start(self, began: float) -> None:
        self.phase = Phase.SPEAKING
        self.audio.drop_before(max(self.audio.start, began - PREROLL_S))
        self._forget_words()
        self.read_until = self.audio.start
        self._onset = began
        self._emit(SpeechStarted(round(began, 3)))
        if self.turn is not None:
            self.turn.begin(round(began, 3))

    def _end_of_speech(self, ended: float) -> None:
        """The endpointer heard ``endpointing_ms`` of silence (a turn's ``eot_timeout``) after
        speech that stopped at ``ended``: the utterance (the turn) ends there."""
        self._end(Ending.TURN if self.turn is not None else Ending.ENDPOINT, ended)

    def _read_pause(self, reading: Reading) -> None:
        """A reading that heard the turn's pause: the words the turn ends with if it ends there."""
        assert self.turn is not None and self.turn.pause is not None
        heard = self._heard_words
        words = self._final_candidate(heard, self.turn.pause.speech_end)
        same_end = bool(words and heard and words[-1] == heard[-1])  # the reading's closing mark
        self.turn.read(words, reading.closing if same_end else None)
        self._judge_turn()

    def _hold(self, pause: Pause | None, resumed: float) -> None:
        """The voice came back after a pause that was read: the words up to it are a final of the
        turn (a segment), and the turn reads on from the pause, not from its start (the model
        reads what follows with them as its prompt, a shorter window, sooner)."""
        if pause is None or not pause.words:
            return
        self._emit_final(pause.words, "pause", None)
        self._said = pause.words[-5:]
        self._confirmed, self._tail, self._heard_words = [], [], None
        self.audio.drop_before(max(pause.speech_end + CHUNK_S, resumed - CHUNK_S - PAUSE_S))
        self.read_until = self.audio.start

    def _pause_heard_from(self) -> float:
        """Where a reading must reach to have heard the turn's pause."""
        assert self.turn is not None and self.turn.pause is not None
        return self.turn.pause.speech_end + READ_AFTER_S - 1e-6

    def _judge_turn(self) -> None:
        if self.phase != Phase.SPEAKING:
            return
        if self.turn is not None and self.turn.pause is not None and self.turn.judge(self.heard):
            self._end(Ending.TURN, self.turn.pause.speech_end)

    def _final_candidate(self, heard: list[Word] | None, speech_end: float) -> list[Word]:
        """The final's words from the latest reading (``policy.final_words``)."""
        if heard is not None and self._said:  # a sentence was finalized already: not twice
            heard = past_confirmed(self._said, heard)
        return final_words(self._confirmed, self._tail, heard, speech_end)

    def _end(self, why: Ending, until: float) -> None:
        self.phase, self.ending = Phase.ENDING, why
        self.speech_end = until
        self._final_until = until + (ENDPOINT_TAIL_S if why == Ending.ENDPOINT else 0.0)

    def _forget_words(self) -> None:
        self._confirmed, self._tail, self._heard_words, self._said = [], [], None, []

    # ---------------- events ----------------
    def _emit(self, event: Event, since: float | None = None) -> None:
        self._events.append(Emitted(event, since))

    def _send_interim(self) -> None:
        words = self._confirmed + self._tail
        text = join_words(words)
        if not self.options.interim_results or not text or text == self._last_interim:
            return
        self._last_interim = text
        onset, self._onset = self._onset, None
        interim = Interim(self.segment_id, text, words[0].start, words[-1].end, join_words(self._confirmed))
        self._emit(interim, onset)

    def _finalize_long_sentences(self) -> None:
        """In long unbroken speech, send confirmed whole sentences as finals rather than wait."""
        if self.heard - self.audio.start < SENTENCE_FINAL_AFTER_S:
            return
        n = last_sentence_end(self._confirmed)
        if n:
            self._emit_final(self._confirmed[:n], "sentence", None)
            self._said = self._confirmed[max(0, n - 5) : n]
            self._confirmed = self._confirmed[n:]
            self._heard_words = self._confirmed + self._tail  # what the reading heard past the sentence
            self.audio.drop_before(self._heard_words[0].start if self._heard_words else self._said[-1].end)

    def _emit_final(self, words: list[Word], reason: str, speech_end: float | None) -> None:
        self._last_interim = ""
        if not words:
            return
        language = self.language or self.options.language
        final = Final(
            self.segment_id, join_words(words), words[0].start, words[-1].end, list(words), language, reason
        )
        # the others end where speech (or the client's audio) ended
        since = None if reason == "sentence" else (speech_end if speech_end is not None else words[-1].end)
        self._emit(final, since)
        if self.turn is not None:
            self.turn.finalized(final.words)
        self.prompt.said(final.text, turn_ended=self.turn is not None and reason in ("end_of_turn", "flush"))
        self.segment_id += 1
        self.finals += 1


def chunks_of(
    u: Utterance, probs: Float32Array
) -> tuple[Float32Array, Float32Array, npt.NDArray[np.float64]] | None:
    """The latest ``hear``'s whole chunks (chunks × 512 samples), their probabilities and end
    times (what the speaker windows read), or None if that audio is no longer held."""
    first = u.vad_samples - len(probs) * CHUNK
    audio = u.audio.between(first / SAMPLE_RATE, u.vad_samples / SAMPLE_RATE)
    if audio.size != len(probs) * CHUNK:
        return None
    ends = (first / CHUNK + np.arange(1, len(probs) + 1, dtype=np.float64)) * CHUNK_S
    # copies: a view would keep the stream's old buffer alive
    return audio.reshape(-1, CHUNK).copy(), probs.copy(), ends

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import HARVARD, PROSE, Synth, corpus_wer, normalized_words, recordings
from voxindex.audio import decode_file
from voxindex.engine.align import Word
from voxindex.models.loader import WhisperModel
from voxindex.transcribe import OfflineTranscriber, Segment, drop_repeated_start


@pytest.fixture(scope="module")
def transcriber(tiny: WhisperModel) -> OfflineTranscriber:
    return OfflineTranscriber(tiny)


@pytest.mark.parametrize(("corpus", "limit"), [("pocketsphinx", 0.20), ("librivox", 0.10)])
def test_real_human_recordings(transcriber: OfflineTranscriber, corpus: str, limit: float) -> None:
    """Cards and a command (short, narrow-band: tiny.en's hardest) within 20 %; read prose within 10 %."""
    pairs = [(r.transcript, transcriber.transcribe(decode_file(r.path)).text) for r in recordings(corpus)]
    assert corpus_wer(pairs) <= limit, pairs


def test_clean_read_sentences_within_10_percent_wer(transcriber: OfflineTranscriber, synth: Synth) -> None:
    pairs = [(s, transcriber.transcribe(synth(s)).text) for s in PROSE]
    assert corpus_wer(pairs) <= 0.10, pairs


def test_hard_phonetic_sentences_within_20_percent_wer(transcriber: OfflineTranscriber, synth: Synth) -> None:
    """Harvard sentences have no context to lean on; tiny.en scores about 11% here."""
    pairs = [(s, transcriber.transcribe(synth(s)).text) for s in HARVARD]
    assert corpus_wer(pairs) <= 0.20, pairs


def test_long_audio_spans_windows_without_losing_words(transcriber: OfflineTranscriber, synth: Synth) -> None:
    gap = np.zeros(8000, dtype=np.float32)
    audio = np.concatenate([np.concatenate([synth(s), gap]) for s in PROSE])
    duration = audio.size / 16000
    assert duration > 45  # really crosses 30-second windows
    result = transcriber.transcribe(audio, words=True)
    assert corpus_wer([(" ".join(PROSE), result.text)]) <= 0.10, result.text
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    assert all(0 <= s.start < s.end <= duration + 0.01 for s in result.segments)
    words = [w for s in result.segments for w in s.words]
    assert len(words) >= 0.9 * len(" ".join(PROSE).split())
    assert all(0 <= w.start <= w.end <= duration + 0.01 and 0 < w.confidence <= 1 for w in words)
    assert result.duration == pytest.approx(duration, abs=0.01)


def test_word_timings_follow_the_speech(transcriber: OfflineTranscriber, synth: Synth) -> None:
    lead = np.zeros(16000 * 2, dtype=np.float32)  # speech starts at 2.0 s
    speech = synth("Please remember to submit your travel expenses before the end of the month.")
    result = transcriber.transcribe(np.concatenate([lead, speech, lead]), words=True)
    words = [w for s in result.segments for w in s.words]
    assert words[0].word.lower() == "please"
    assert 1.6 <= words[0].start <= 2.5
    assert words[-1].end <= 2.0 + speech.size / 16000 + 0.6


def test_silence_and_noise_give_no_text(transcriber: OfflineTranscriber) -> None:
    rng = np.random.default_rng(0)
    assert transcriber.transcribe(np.zeros(16000 * 5, dtype=np.float32)).segments == []
    quiet_noise = (0.001 * rng.standard_normal(16000 * 5)).astype(np.float32)
    assert transcriber.transcribe(quiet_noise).text == ""


def test_a_window_that_re_reads_the_last_words_kept_does_not_repeat_them() -> None:
    before = "Eight of spades. Four of"
    seen = Segment(10.0, 12.0, "Four of Clovs. Seven of Hearts.", [])
    assert drop_repeated_start(before, seen).text == "Clovs. Seven of Hearts."
    timed = Segment(
        3.0,
        6.0,
        "had then leisure",
        [Word(" had", 3.0, 3.2, 0.9), Word(" then", 3.2, 3.5, 0.9), Word(" leisure", 3.6, 4.0, 0.9)],
    )
    kept = drop_repeated_start("And Mr. John Dashwood had then", timed)
    assert (kept.text, kept.start, [w.word for w in kept.words]) == ("leisure", 3.6, [" leisure"])
    said_twice = Segment(5.0, 6.0, "five, and more", [])  # one word across a seam: may be said twice
    assert drop_repeated_start("Five, five", said_twice) is said_twice
    assert drop_repeated_start("the end", Segment(0, 1, "something else", [])).text == "something else"


def test_real_speech_across_window_seams_has_no_phrase_read_twice(transcriber: OfflineTranscriber) -> None:
    """Every real recording back to back, 1 s apart (48 s: two windows and a re-read seam):
    no two-word phrase is heard twice in a row unless the speaker said it so."""
    gap = np.zeros(16000, dtype=np.float32)
    recs = recordings()
    audio = np.concatenate([gap] + [np.concatenate([decode_file(r.path), gap]) for r in recs])
    words = normalized_words(transcriber.transcribe(audio).text)
    said = normalized_words(" ".join(r.transcript for r in recs))

    def doubled(ws: list[str]) -> set[tuple[str, ...]]:
        return {tuple(ws[i : i + 2]) for i in range(len(ws) - 3) if ws[i : i + 2] == ws[i + 2 : i + 4]}

    assert doubled(words) <= doubled(said), " ".join(words)
    assert len(words) >= 0.9 * len(said)  # and nothing was dropped instead

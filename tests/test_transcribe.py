from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import HARVARD, PROSE, Synth, corpus_wer, normalized_words, recordings
from voxindex.audio import decode_file
from voxindex.models.whisper import WhisperModel
from voxindex.transcribe import OfflineTranscriber


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


def test_each_word_timing_belongs_to_one_segment_across_window_seams(transcriber: OfflineTranscriber) -> None:
    """Every real recording back to back, 1 s apart (48 s: two windows, segments cut by
    timestamps mid-utterance): the segments' word timings spell the transcript once, in order;
    no word is given to two segments (aligned starts run a little early)."""
    gap = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([gap] + [np.concatenate([decode_file(r.path), gap]) for r in recordings()])
    result = transcriber.transcribe(audio, words=True)
    timed = normalized_words(" ".join(w.word for s in result.segments for w in s.words))
    assert timed == normalized_words(result.text), [[w.word for w in s.words] for s in result.segments]
    starts = [w.start for s in result.segments for w in s.words]
    assert starts == sorted(starts)

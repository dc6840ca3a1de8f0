"""The log-mel front end computes OpenAI's spectrogram, for only the frames the encoder reads."""

from __future__ import annotations

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from tests.conftest import recordings
from voxindex.audio import SAMPLE_RATE, decode_file
from voxindex.engine.executor import window_frames
from voxindex.engine.mel import N_FRAMES, LogMel


def test_a_short_window_is_the_start_of_the_padded_thirty_second_spectrogram() -> None:
    """transformers' feature extractor (numpy, a port of OpenAI's) pads every clip to 30 s; our
    batch computes each live window's own frames (15–30 s), and they must be the same values,
    peak normalisation included, for clips of every length in one batch."""
    clips = [decode_file(r.path) for r in recordings()[:6]]
    clips.append(np.concatenate(clips)[: 29 * SAMPLE_RATE])  # a window filled to the end
    reference = WhisperFeatureExtractor(feature_size=80)(
        clips, sampling_rate=SAMPLE_RATE, return_tensors="np"
    ).input_features
    mel = LogMel(80, torch.device("cpu"))
    for frames in sorted({window_frames(c.size) for c in clips} | {N_FRAMES}):
        fits = [i for i, c in enumerate(clips) if window_frames(c.size) <= frames]  # as the executor reads
        ours = mel([torch.from_numpy(clips[i]) for i in fits], frames).numpy()
        assert ours.shape == (len(fits), 80, frames)
        np.testing.assert_allclose(ours, reference[fits, :, :frames], atol=2e-4)

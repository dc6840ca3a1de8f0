from __future__ import annotations

import numpy as np

from tests.conftest import Synth
from voxindex.engine.vad import CHUNK_S, Endpointer, Vad, VadState


def test_tracker_needs_a_run_of_speech_and_a_run_of_silence() -> None:
    t = Endpointer(endpointing_s=0.5)
    time = 0.0

    def feed(prob: float, n: int) -> list[tuple[float | None, float | None]]:
        nonlocal time
        out = []
        for _ in range(n):
            time += CHUNK_S
            out.append(t.update(prob, time))
        return out

    assert all(e == (None, None) for e in feed(0.9, 2))  # a click is not speech
    assert all(e == (None, None) for e in feed(0.1, 5))
    events = feed(0.9, 10)
    started = [s for s, _ in events if s is not None]
    assert len(started) == 1 and abs(started[0] - (7 * CHUNK_S)) < 1e-9  # the run's first chunk
    assert all(e == (None, None) for e in feed(0.1, 10))  # 320 ms of silence: not yet an endpoint
    ended = [e for _, e in feed(0.1, 10) if e is not None]
    assert len(ended) == 1 and abs(ended[0] - 17 * CHUNK_S) < 1e-9  # the end of the last voiced chunk


def test_a_higher_threshold_takes_surer_speech_to_start_and_to_hold() -> None:
    """OpenAI's ``server_vad`` threshold (api/realtime_session.py): 0.5 is the default."""

    def starts(threshold: float, prob: float) -> bool:
        t = Endpointer(endpointing_s=0.5, threshold=threshold)
        return any(t.update(prob, (k + 1) * CHUNK_S)[0] is not None for k in range(5))

    assert starts(0.5, 0.6) and not starts(0.8, 0.6) and starts(0.8, 0.85)
    t = Endpointer(endpointing_s=0.1, threshold=0.8)
    for k in range(5):
        t.update(0.9, (k + 1) * CHUNK_S)
    ended = [t.update(0.6, (k + 6) * CHUNK_S)[1] for k in range(5)]  # 0.6 < 0.8 - 0.15: silence
    assert ended[3] is not None and abs(ended[3] - 5 * CHUNK_S) < 1e-9


def test_batched_vad_matches_one_stream_at_a_time(synth: Synth) -> None:
    vad = Vad()
    speech = np.concatenate([np.zeros(8000, np.float32), synth("Kick the ball straight and follow through.")])
    noise = (0.01 * np.random.default_rng(0).standard_normal(speech.size)).astype(np.float32)
    alone = [vad([VadState()], [x])[0] for x in (speech, noise)]
    states = [VadState(), VadState()]
    # fed together, in uneven pieces: the same decisions
    together = [np.zeros(0, np.float32), np.zeros(0, np.float32)]
    for a, b in [(0, 3000), (3000, 20000), (20000, speech.size)]:
        out = vad(states, [speech[a:b], noise[a : a + (b - a) // 2]])
        together[0] = np.concatenate([together[0], out[0]])
        together[1] = np.concatenate([together[1], out[1]])
    np.testing.assert_allclose(together[0], alone[0], atol=1e-4)
    assert together[0][:10].max() < 0.3  # leading silence
    assert together[0].max() > 0.9  # speech
    assert alone[1].max() < 0.5  # noise is not speech


def test_batched_vad_hears_real_speech_as_silero_streams_it() -> None:
    """Our batched, stateless use of Silero's network gives the probabilities of Silero's own
    streaming model (its TorchScript module, fed chunk by chunk) on real recordings."""
    from importlib import resources

    import torch

    from tests.conftest import recordings
    from voxindex.audio import decode_file
    from voxindex.engine.vad import CHUNK

    clips = [decode_file(r.path) for r in recordings()[:4]]
    states = [VadState() for _ in clips]
    ours = Vad()(states, clips)
    silero = torch.jit.load(str(resources.files("silero_vad.data").joinpath("silero_vad.jit")))
    for clip, probs in zip(clips, ours, strict=True):
        silero.reset_states()
        with torch.inference_mode():
            theirs = [
                float(silero(torch.from_numpy(clip[i * CHUNK : (i + 1) * CHUNK])[None], 16000)[0])
                for i in range(clip.size // CHUNK)
            ]
        np.testing.assert_allclose(probs, theirs, atol=1e-5)
        assert max(theirs) > 0.9  # real speech, heard as speech


def test_the_vad_hears_the_same_whichever_runtime_a_call_takes() -> None:
    """On a CPU a call of few streams' chunks runs in ONNX Runtime, a larger one in TorchScript
    (``ONNX_MAX_ROWS``): real recordings heard many at once and each alone give the same
    probabilities, so how many streams share a step never changes a decision."""
    from tests.conftest import recordings
    from voxindex.audio import decode_file
    from voxindex.engine.vad import ONNX_MAX_ROWS

    clips = [decode_file(r.path) for r in recordings()]
    clips = (clips * (ONNX_MAX_ROWS // len(clips) + 2))[: ONNX_MAX_ROWS + 4]
    vad = Vad()
    assert vad._onnx is not None  # the CPU's small calls
    together = vad([VadState() for _ in clips], clips)  # > ONNX_MAX_ROWS rows: TorchScript
    for clip, probs in zip(clips, together, strict=True):
        alone = vad([VadState()], [clip])[0]  # one row: ONNX Runtime
        np.testing.assert_allclose(alone, probs, atol=1e-5)
        assert ((alone >= 0.5) == (probs >= 0.5)).all()

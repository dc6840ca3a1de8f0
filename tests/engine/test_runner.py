"""The runner decodes what the reference decoder decodes: same tokens, timings within 20 ms.

Real tiny.en (and multilingual base) weights in float32, on the real recordings. Each row is
compared with the reference decoding it alone. The one difference allowed is a true near-tie
(the two best logits within ``TIE`` at the step where the two paths part), which is reported
rather than hidden; a row with no near-tie must match token for token.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import recordings
from tests.engine.reference_decoder import Decoder, is_looping
from voxindex.audio import SAMPLE_RATE, Float32Array, decode_file
from voxindex.engine.align import alignment_matrix, dtw, word_timings
from voxindex.engine.encoder import encode
from voxindex.engine.executor import window_frames
from voxindex.engine.mel import HOP_LENGTH, LogMel
from voxindex.engine.runner import Runner
from voxindex.engine.runner.model_runner import DRAFT_MARGIN
from voxindex.engine.types import DecodeOptions, Hypothesis
from voxindex.loading import load_model
from voxindex.models.whisper import WhisperModel

TIE = 1e-3
TIMING_S = 0.02
PATH_TIE = 1e-2  # DTW path costs are sums of ~100 z-scores; float noise moves them by ~1e-4


@dataclass(frozen=True)
class Clip:
    name: str
    audio: Float32Array
    encoded: torch.Tensor  # (1, frames, d): the clip's own window, as the executor encodes it


@pytest.fixture(scope="module")
def f32(cache_dir: Path) -> WhisperModel:
    return load_model("tiny.en", device="cpu", cache_dir=cache_dir, compute_type="float32")


def clips_for(model: WhisperModel) -> list[Clip]:
    """Every real recording, plus all the read prose in one 25-second clip (a longer window)."""
    sounds = [(r.path.stem, decode_file(r.path)) for r in recordings()]
    prose = [a for name, a in sounds if name.startswith("sense")]
    sounds.append(("prose", np.concatenate(prose)[: 28 * SAMPLE_RATE]))
    mel = LogMel(model.n_mels, model.device)
    out = []
    for name, audio in sounds:
        frames = window_frames(audio.size)
        out.append(Clip(name, audio, encode(model, mel([torch.from_numpy(audio)]), frames)))
    return out


@pytest.fixture(scope="module")
def clips(f32: WhisperModel) -> list[Clip]:
    return clips_for(f32)


def options(
    model: WhisperModel, clip: Clip, prompt: str = "", timestamps: bool = False, **kw: object
) -> DecodeOptions:
    tokens = tuple(model.tokenizer.encode(" " + prompt)) if prompt else ()
    return DecodeOptions(
        prompt=tokens,
        timestamps=timestamps,
        align=True,
        num_frames=min(clip.encoded.shape[1] * 2, clip.audio.size // HOP_LENGTH + 1),
        max_tokens=min(224, 16 + int(clip.audio.size / SAMPLE_RATE * 8)),
        **kw,  # type: ignore[arg-type]
    )


PROMPTS = ["", "Cards and directions.", "And Mr. John Dashwood had then leisure to consider."]


def variants(model: WhisperModel, clips: list[Clip]) -> list[tuple[Clip, DecodeOptions]]:
    """Every clip with and without a prompt, with and without timestamps."""
    return [
        (clip, options(model, clip, PROMPTS[(k + t) % len(PROMPTS)], bool(t)))
        for k, clip in enumerate(clips)
        for t in (0, 1)
    ]


def reference(model: WhisperModel, clip: Clip, opt: DecodeOptions) -> Hypothesis:
    return Decoder(model, record_margins=True).decode(clip.encoded, [opt])[0]


def decode_mixed(
    runner: Runner, rows: list[tuple[Clip, DecodeOptions]], join_every: int = 0, seed: int = 0
) -> list[Hypothesis]:
    """Decode ``rows`` through the runner: all admitted at once, or (``join_every``) a few at a
    time between steps, in random order, releasing each as it finishes."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    results: dict[int, Hypothesis] = {}
    keys: dict[int, int] = {}
    waiting = list(order)
    steps = 0
    while waiting or keys:
        if waiting and (not join_every or steps % join_every == 0):
            take = waiting[: (2 if join_every else len(waiting))]
            take = take[: runner.free]
            waiting = waiting[len(take) :]
            for i in take:  # each clip has its own window: one admission each
                clip, opt = rows[i]
                keys[runner.admit(clip.encoded, [opt])[0]] = i
        for key in runner.step():
            results[keys.pop(key)] = runner.release(key)
        steps += 1
    return [results[i] for i in range(len(rows))]


def assert_same(ref: Hypothesis, new: Hypothesis, what: str, ties: list[str]) -> None:
    """Same tokens, or parted only at a near-tie (recorded in ``ties``)."""
    assert ref.margins is not None and new.margins is not None
    n = next((k for k, (a, b) in enumerate(zip(ref.tokens, new.tokens, strict=False)) if a != b), None)
    if n is None and len(ref.tokens) != len(new.tokens):
        n = min(len(ref.tokens), len(new.tokens))
    if n is not None:
        margin = min(ref.margins[n], new.margins[n])
        assert margin < TIE, f"{what}: tokens part at {n} with a margin of {margin:.4f} (no tie)"
        ties.append(f"{what}: near-tie at token {n} (margin {margin:.2e})")
        return
    assert new.looped == ref.looped, what
    assert new.no_speech_prob == pytest.approx(ref.no_speech_prob, abs=1e-4), what
    assert new.token_logprobs == pytest.approx(ref.token_logprobs, abs=1e-3), what
    assert new.language == ref.language, what


def assert_timings(model: WhisperModel, ref: Hypothesis, new: Hypothesis, what: str, ties: list[str]) -> None:
    """Word times within 20 ms, or an alignment tie: the runner's DTW path scores within
    ``PATH_TIE`` of the reference's best path on the reference's own attention."""
    if ref.tokens != new.tokens:
        return
    assert ref.attention is not None and new.attention is not None
    assert new.attention.shape == ref.attention.shape, what
    assert (new.attention.float() - ref.attention.float()).abs().max() < 1e-3, what
    a = word_timings(model.tokenizer, ref.tokens, ref.token_logprobs, ref.attention)
    b = word_timings(model.tokenizer, new.tokens, new.token_logprobs, new.attention)
    assert [w.word for w in a] == [w.word for w in b], what
    if all(
        abs(x.start - y.start) <= TIMING_S and abs(x.end - y.end) <= TIMING_S
        for x, y in zip(a, b, strict=True)
    ):
        return
    matrix = alignment_matrix(model.tokenizer, ref.tokens, ref.attention)
    other = alignment_matrix(model.tokenizer, new.tokens, new.attention)
    assert matrix is not None and other is not None
    best, theirs = path_cost(-matrix, dtw(-matrix)), path_cost(-matrix, dtw(-other))
    assert theirs - best < PATH_TIE, (
        f"{what}: timings differ and the runner's path costs {theirs - best:.4f} more"
    )
    ties.append(f"{what}: alignment tie (path cost within {theirs - best:.1e})")


def path_cost(cost: np.ndarray, path: tuple[np.ndarray, np.ndarray]) -> float:
    return float(cost[path[0], path[1]].sum())


def check(model: WhisperModel, rows: list[tuple[Clip, DecodeOptions]], got: list[Hypothesis]) -> list[str]:
    ties: list[str] = []
    for (clip, opt), new in zip(rows, got, strict=True):
        what = f"{clip.name} prompt={len(opt.prompt)} timestamps={opt.timestamps} language={opt.language}"
        ref = reference(model, clip, opt)
        assert_same(ref, new, what, ties)
        assert_timings(model, ref, new, what, ties)
    for tie in ties:
        warnings.warn(tie, stacklevel=1)
    assert len(ties) <= len(rows) // 4, ties  # a near-tie is rare; many means the paths differ
    return ties


def test_each_row_alone_decodes_as_the_reference(f32: WhisperModel, clips: list[Clip]) -> None:
    rows = variants(f32, clips)
    got = []
    runner = Runner(f32, slots=1, record_margins=True)
    for clip, opt in rows:
        got += decode_mixed(runner, [(clip, opt)])
    check(f32, rows, got)
    assert any(h.tokens for h in got) and any(o.timestamps for _, o in rows)
    assert any(t >= f32.tokenizer.special.timestamp_begin for h in got for t in h.tokens)


def test_a_row_decodes_the_same_beside_fifteen_others(f32: WhisperModel, clips: list[Clip]) -> None:
    rows = variants(f32, clips)[:16]
    runner = Runner(f32, slots=16, record_margins=True)
    check(f32, rows, decode_mixed(runner, rows))


def test_rows_joining_and_leaving_mid_decode_do_not_change_the_others(
    f32: WhisperModel, clips: list[Clip]
) -> None:
    rows = variants(f32, clips)
    runner = Runner(f32, slots=6, record_margins=True)  # fewer slots than rows: slots are reused
    check(f32, rows, decode_mixed(runner, rows, join_every=3, seed=1))


def test_static_shapes_padded_to_buckets_decode_the_same(f32: WhisperModel, clips: list[Clip]) -> None:
    """The shapes a CUDA graph replays (buckets of slots, the whole cache), run eagerly."""
    rows = variants(f32, clips)[:10]
    runner = Runner(f32, slots=12, static_shapes=True, record_margins=True)
    assert runner.capacity == 16
    check(f32, rows, decode_mixed(runner, rows, join_every=2, seed=2))


def test_a_retry_in_the_same_slot_keeps_the_encoder_output(f32: WhisperModel, clips: list[Clip]) -> None:
    clip = next(c for c in clips if c.name == "prose")
    prompted = options(f32, clip, PROMPTS[2])
    runner = Runner(f32, slots=2, record_margins=True)
    key = runner.admit(clip.encoded, [prompted])[0]
    for _ in range(5):
        runner.step()
    runner.restart(key, replace(prompted, prompt=()))
    while key not in runner.step():
        pass
    check(f32, [(clip, replace(prompted, prompt=()))], [runner.release(key)])


def test_multilingual_rows_mix_languages_prompts_and_detection(cache_dir: Path) -> None:
    base = load_model("base", device="cpu", cache_dir=cache_dir, compute_type="float32")
    clips = [c for c in clips_for(base) if c.name in ("goforward", "cards-005", "prose")]
    rows = [
        (clips[0], options(base, clips[0], language="auto")),
        (clips[1], options(base, clips[1], PROMPTS[1], True, language="en")),
        (clips[2], options(base, clips[2], language="fr")),
        (clips[2], options(base, clips[2], PROMPTS[2], language="auto")),
        (clips[1], options(base, clips[1], timestamps=True, language="de")),
    ]
    runner = Runner(base, slots=8, record_margins=True)
    got = decode_mixed(runner, rows)
    check(base, rows, got)
    assert got[0].language == "en" and got[2].language == "fr"


def test_a_full_runner_refuses_more_rows(f32: WhisperModel, clips: list[Clip]) -> None:
    runner = Runner(f32, slots=1)
    runner.admit(clips[0].encoded, [options(f32, clips[0])])
    with pytest.raises(ValueError, match="free slots"):
        runner.admit(clips[1].encoded, [options(f32, clips[1])])


@pytest.mark.needs_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graph capture needs a CUDA device")
def test_captured_graphs_decode_as_the_eager_static_step(cache_dir: Path) -> None:
    model = load_model("tiny.en", device="cuda", cache_dir=cache_dir, compute_type="float16")
    clips = clips_for(model)
    rows = variants(model, clips)[:12]
    eager = decode_mixed(Runner(model, slots=16, static_shapes=True, record_margins=True), rows, 2)
    graphed = Runner(model, slots=16, static_shapes=True, record_margins=True)
    graphed.capture()
    again = decode_mixed(graphed, rows, 2)
    assert [h.tokens for h in again] == [h.tokens for h in eager]


def test_the_logit_rules_match_the_reference_in_every_timestamp_state(f32: WhisperModel) -> None:
    """Real speech rarely makes a rule bind (Whisper seldom wants a timestamp out of order), so
    the rules are also checked directly: random histories of text and timestamp tokens, random
    logits (half of them favouring timestamps), and for every row the runner must choose the
    reference's token with the reference's log-probability. A mask that differs anywhere moves
    the normalising sum, so the log-probability shows it even where the choice does not."""
    sp = f32.tokenizer.special
    tb, rng = sp.timestamp_begin, random.Random(5)
    width = 64
    runner = Runner(f32, slots=width)
    reference = Decoder(f32)
    vocab = runner.sampler.vocab_ids.numel()
    for trial in range(12):
        first = trial % 4 == 0
        rows: list[list[int]] = []
        opts = []
        for _ in range(width):
            stamps = sorted(rng.sample(range(0, 120), 4))
            history = (
                []
                if first
                else [
                    rng.choice([rng.randrange(0, sp.eot), tb + stamps[k % 4]])
                    for k in range(rng.randint(1, 6))
                ]
            )
            rows.append(history)
            opts.append(DecodeOptions(timestamps=rng.random() < 0.8, num_frames=rng.choice([40, 200, 3000])))
        set_state(runner, rows, opts, first)
        logits = torch.randn(width, vocab, generator=torch.Generator().manual_seed(trial)) * 3
        logits[: width // 2, tb:] += 6  # timestamps competitive in half the rows
        expected = reference._apply_rules(logits.clone(), rows, opts, first)
        runner.sampler(logits.clone(), torch.zeros(width, len(runner.forward.align), 8), width, 8, full=True)
        choice = runner.batch.choice[:width]
        logp = runner.batch.logprobs[torch.arange(width), torch.tensor([len(h) for h in rows])]
        assert choice.tolist() == expected.argmax(-1).tolist(), trial
        want = expected.log_softmax(-1).gather(1, choice[:, None])[:, 0]
        assert torch.allclose(logp, want, atol=1e-4), (trial, (logp - want).abs().max())


def set_state(runner: Runner, rows: list[list[int]], opts: list[DecodeOptions], first: bool) -> None:
    """The runner's per-slot decode state for rows that generated ``rows`` so far."""
    tb, b = runner.sampler.tb, runner.batch
    for i, (history, opt) in enumerate(zip(rows, opts, strict=True)):
        b.count[i] = len(history)
        b.last[i] = history[-1] if history else runner.tok.special.sot
        b.prev[i] = history[-2] if len(history) >= 2 else -1
        b.stamp[i] = next((t for t in reversed(history) if t >= tb), -1)
        b.first[i] = first
        b.timestamps[i] = opt.timestamps
        b.last_allowed[i] = tb + opt.num_frames // 2


def test_repetition_loops_are_found_on_the_device_as_the_reference_finds_them(f32: WhisperModel) -> None:
    """The runner judges loops for all rows at once on the device; on random token histories
    with planted repeats (n-grams of 1–14 tokens said 2–5 times, so some are one short of a
    loop) it must agree with the reference decoder's ``is_looping`` row for row."""
    rng = random.Random(11)
    width = 256
    runner = Runner(f32, slots=width)
    histories = []
    for _ in range(width):
        prefix = [rng.randrange(0, 50) for _ in range(rng.randint(0, 30))]
        gram = [rng.randrange(0, 50) for _ in range(rng.randint(1, 14))]
        seq = (prefix + gram * rng.randint(2, 5))[: runner.batch.history.shape[1]]
        histories.append(seq)
        runner.batch.history[len(histories) - 1, : len(seq)] = torch.tensor(seq)
    lengths = torch.tensor([len(h) for h in histories])
    found = runner.sampler._looping(lengths, width).tolist()
    expected = [is_looping(h) for h in histories]
    assert found == expected
    assert 40 < sum(expected) < width - 40  # both kinds are well represented


def test_a_draft_decodes_what_greedy_decoding_does_in_fewer_steps(
    f32: WhisperModel, clips: list[Clip]
) -> None:
    """A row given a draft (the stream's previous reading) keeps as much of it as greedy decoding
    would have chosen and decodes on from there: the same tokens, log-probabilities, margins and
    alignment attention as without it, whether the draft is whole, cut short, wrong in the middle
    or another clip's words. A draft is kept up to its first near-tie (there a decode step
    chooses, as without a draft): a whole draft with none leaves one step (the end of text)."""
    eot = f32.tokenizer.special.eot
    rows, kinds, sure = [], [], []
    names = ("cards-001", "cards-005", "goforward", "prose")
    speech = [next(c for c in clips if c.name == name) for name in names]
    for k, clip in enumerate(speech):
        plain = options(f32, clip, PROMPTS[k % 2])
        ref = reference(f32, clip, plain)
        text = [t for t in ref.tokens if t < eot]
        assert ref.margins is not None  # a draft is kept up to its first near-tie, no further
        ties = [i for i, margin in enumerate(ref.margins[: len(text)]) if margin <= DRAFT_MARGIN]
        assert len(text) >= 4, clip.name
        other = [t for t in reference(f32, speech[k - 1], plain).tokens if t < eot]
        wrong = list(text)
        wrong[len(text) // 2] = text[len(text) // 2] + 1
        for kind, draft in (
            ("whole", text),
            ("half", text[: len(text) // 2]),
            ("wrong", wrong),
            ("other", other),
        ):
            rows.append((clip, replace(plain, draft=tuple(draft))))
            kinds.append(kind)
            sure.append(ties[0] if ties else len(text))
    runner = Runner(f32, slots=1, record_margins=True)
    got, steps = [], []
    for clip, opt in rows:
        key = runner.admit(clip.encoded, [opt])[0]
        n = 1
        while key not in runner.step():
            n += 1
        got.append(runner.release(key))
        steps.append(n)
    check(f32, [(clip, replace(opt, draft=())) for clip, opt in rows], got)
    for kind, opt, hyp, n, kept in zip(kinds, (o for _, o in rows), got, steps, sure, strict=True):
        if kind == "whole":  # kept up to its first near-tie, the rest one step each, then the end
            assert n == len(opt.draft) - kept + 1, (kind, n, kept)
        elif kind in ("half", "wrong"):
            assert n <= len(hyp.tokens) - min(kept, len(opt.draft) // 2) + 2, (kind, n, len(hyp.tokens))
    whole = [(n, len(h.tokens)) for kind, h, n in zip(kinds, got, steps, strict=True) if kind == "whole"]
    assert any(n < t + 1 for n, t in whole), whole  # a kept draft saves decode steps

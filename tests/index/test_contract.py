"""The transcript index contract, held by both stores: embedded (SQLite + FAISS) and shared
(Milvus, through a real ``milvus-lite server`` on loopback)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import MilvusLite
from voxindex.config import Settings
from voxindex.engine.events import Final
from voxindex.engine.types import Word
from voxindex.index.backends import open_index
from voxindex.index.base import TranscriptIndex
from voxindex.index.records import Filters
from voxindex.index.search import Mode

T = TypeVar("T")
MEETING = [
    "Good morning everyone and welcome to the planning meeting.",
    "Today we review the budget for the new office.",
    "The marketing team finished the first draft of the campaign.",
]
OTHER = ["The weather in the city has been cold and rainy all week."]


def final(i: int, text: str) -> Final:
    words = [Word(w, i * 5.0 + j * 0.4, i * 5.0 + j * 0.4 + 0.3, 0.9) for j, w in enumerate(text.split())]
    return Final(i, text, words[0].start, words[-1].end, words, "en", "endpoint")


def eventually(read: Callable[[], T], ok: Callable[[T], bool], timeout: float = 20.0) -> T:
    """``read()`` once ``ok`` holds: vectors become searchable a moment after the commit."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


Opener = Callable[[], TranscriptIndex]


@pytest.fixture(params=["sqlite", "milvus"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the index (again, after close: same data) for one store kind."""
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path / "data", store="sqlite://")
    else:
        milvus: MilvusLite = request.getfixturevalue("milvus")
        name = "c" + uuid.uuid4().hex[:12]
        settings = Settings(data_dir=tmp_path / "data", store=milvus.collection(name), replica_id="r1")
    opened: list[TranscriptIndex] = []

    def open_() -> TranscriptIndex:
        opened.append(open_index(settings))
        return opened[-1]

    yield open_
    for index in opened:
        index.close()


def commit_stream(index: TranscriptIndex, stream_id: str, tenant: str, texts: list[str]) -> None:
    """Commit like the engine does, and wait for each final's delivery (durable in the store)."""
    index.open_stream(stream_id, "tiny.en", tenant)
    delivered = threading.Event()
    for i, text in enumerate(texts):
        index.commit(stream_id, final(i, text), "tiny.en")
    index.close_stream(stream_id)
    index.deliver(stream_id, delivered.set)
    assert delivered.wait(30), "finals were never acknowledged"


def texts(hits: list[Any]) -> list[str]:
    return [h.segment.text for h in hits]


def test_streams_segments_and_tenants(opener: Opener) -> None:
    index = opener()
    commit_stream(index, "r1-meeting", "acme", MEETING)
    commit_stream(index, "r1-other", "globex", OTHER)
    record = index.get_stream("r1-meeting", "acme")
    assert record is not None and record.segments == 3 and record.closed is not None
    assert record.tenant == "acme" and record.model == "tiny.en"
    assert index.get_stream("r1-meeting", "globex") is None  # another tenant's stream does not exist
    segments = index.segments_of("r1-meeting")
    assert [s.text for s in segments] == MEETING and [s.segment_index for s in segments] == [0, 1, 2]
    assert segments[1].words[0].word == "Today" and segments[1].start == pytest.approx(5.0)
    assert [s.id for s in index.list_streams("acme")] == ["r1-meeting"]
    assert {s.id for s in index.list_streams(None)} == {"r1-meeting", "r1-other"}
    assert len(index.list_streams(None, limit=1)) == 1


def test_keyword_vector_and_hybrid_search_with_filters(opener: Opener) -> None:
    index = opener()
    commit_stream(index, "r1-meeting", "acme", MEETING)
    commit_stream(index, "r1-other", "globex", OTHER)
    acme = Filters(tenant="acme")
    hits = eventually(lambda: index.search("budget office", 5, Mode.KEYWORD, acme), lambda h: len(h) >= 1)
    assert texts(hits)[0] == MEETING[1]
    assert hits[0].before == MEETING[0] and hits[0].after == MEETING[2]  # context around the hit
    # a loose paraphrase, no shared words: only the vector side can find it (below the default
    # cut-off: MiniLM puts it at a cosine of 0.3)
    hits = eventually(
        lambda: index.search("money for the workplace", 3, Mode.VECTOR, acme, 0.0),
        lambda h: MEETING[1] in texts(h),
    )
    assert texts(hits)[0] == MEETING[1]
    hits = index.search("marketing campaign draft", 3, Mode.HYBRID, acme)
    assert texts(hits)[0] == MEETING[2]
    # filters: tenant, stream, time
    assert index.search("weather", 5, Mode.KEYWORD, acme) == []
    assert texts(index.search("weather", 5, Mode.KEYWORD, Filters(tenant="globex"))) == OTHER
    assert index.search("budget", 5, Mode.HYBRID, Filters(tenant="acme", stream_id="r1-other")) == []
    future = time.time() + 3600
    assert index.search("budget", 5, Mode.KEYWORD, Filters(tenant="acme", since=future)) == []
    assert index.search("budget", 5, Mode.KEYWORD, Filters(tenant="acme", until=future))


def test_a_hit_scores_how_sure_search_is_that_it_was_said(opener: Opener) -> None:
    """Relevance, the same on both stores: in [0, 1], best first, the query's very words above a
    paraphrase of them, and nothing for what nobody said unless ``min_score`` asks for less."""
    index = opener()
    commit_stream(index, "r1-meeting", "acme", [*MEETING, "Go forward 10 meters."])
    everything = eventually(
        lambda: index.search("the meeting", 10, Mode.HYBRID, Filters(), 0.0), lambda h: len(h) == 4
    )
    scores = [h.score for h in everything]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    for mode in Mode:  # something never said: no hit by default, the nearest on request
        assert index.search("who won the football match", 5, mode, Filters()) == [], mode
    assert index.search("who won the football match", 5, Mode.VECTOR, Filters(), 0.0)
    exact = index.search("the budget for the new office", 5, Mode.HYBRID, Filters())
    paraphrase = index.search("how much money the new office gets", 5, Mode.HYBRID, Filters())
    assert texts(exact)[:1] == texts(paraphrase)[:1] == [MEETING[1]]
    assert exact[0].score > paraphrase[0].score >= 0.5
    # a number said as digits is found asked as a word, and a different number is another fact
    said = index.search("go forward ten meters", 5, Mode.KEYWORD, Filters())
    assert texts(said) == ["Go forward 10 meters."] and said[0].score > 0.9
    assert index.search("go backward five meters", 5, Mode.HYBRID, Filters()) == []
    assert index.search("go backward five meters", 5, Mode.HYBRID, Filters(), 0.0)[0].score < 0.5


def test_delete_removes_text_and_vectors_for_that_tenant_only(opener: Opener) -> None:
    index = opener()
    commit_stream(index, "r1-meeting", "acme", MEETING)
    eventually(lambda: index.search("budget", 5, Mode.VECTOR, Filters(), 0.0), lambda h: len(h) == 3)
    assert not index.delete_stream("r1-meeting", "globex")
    assert index.get_stream("r1-meeting") is not None
    assert index.delete_stream("r1-meeting", "acme")
    assert index.get_stream("r1-meeting") is None and index.segments_of("r1-meeting") == []
    for mode in Mode:
        assert index.search("budget for the new office", 5, mode, Filters(), 0.0) == []
    assert not index.delete_stream("r1-meeting", None)


def test_what_was_committed_survives_reopening(opener: Opener) -> None:
    index = opener()
    commit_stream(index, "r1-meeting", "acme", MEETING)
    eventually(lambda: index.search("budget", 5, Mode.VECTOR, Filters(), 0.0), lambda h: len(h) == 3)
    index.close()
    again = opener()
    assert [s.text for s in again.segments_of("r1-meeting")] == MEETING
    hits = eventually(
        lambda: again.search("new office budget", 3, Mode.HYBRID, Filters(), 0.0), lambda h: len(h) == 3
    )
    assert texts(hits)[0] == MEETING[1]


def test_recording_segments_say_so_and_reuse_copies_them(opener: Opener) -> None:
    index = opener()
    index.catalog.create_recording("r1-rec", "acme", "talk.wav", "ab" * 32, "/media/talk.wav", "tiny.en")
    index.commit_window("r1-rec", [final(i, t) for i, t in enumerate(MEETING)], 15.0, "tiny.en")
    index.finish_recording("r1-rec", "en")
    index.catalog.create_recording("r1-copy", "acme", "same.wav", "ab" * 32, "/media/same.wav", "tiny.en")
    index.reuse_transcript("r1-rec", "r1-copy")
    index.close_stream("r1-copy")
    hits = eventually(
        lambda: index.search("budget office", 5, Mode.KEYWORD, Filters(tenant="acme")), lambda h: len(h) >= 2
    )
    assert {h.segment.stream_id for h in hits} == {"r1-rec", "r1-copy"}
    assert all(h.recording and h.to_json()["recording_id"] == h.segment.stream_id for h in hits)
    assert index.catalog.get_recording("r1-rec") is not None

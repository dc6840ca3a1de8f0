from __future__ import annotations

import time
from pathlib import Path

from voxindex.engine.align import Word
from voxindex.engine.events import Final
from voxindex.index.store import Filters, Store


def final(i: int, text: str) -> Final:
    return Final(
        i, text, i * 2.0, i * 2.0 + 1.5, [Word(w, i * 2.0, i * 2.0 + 0.3, 0.9) for w in text.split()]
    )


def test_segments_round_trip_and_keyword_search(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.sqlite3")
    store.create_stream("a", "default", "tiny.en")
    store.create_stream("b", "other", "tiny.en")
    ids = [
        store.commit_segment("a", final(i, t), "tiny.en")
        for i, t in enumerate(["call Alice at 555 0199", "the budget is ready", "thanks Alice"])
    ]
    store.commit_segment("b", final(0, "Alice in another tenant"), "tiny.en")
    segs = store.segments_of("a")
    assert [s.text for s in segs] == ["call Alice at 555 0199", "the budget is ready", "thanks Alice"]
    assert segs[0].words[1].word == "Alice" and segs[0].id == ids[0]
    assert [i for i, _ in store.keyword_search("555", 10, Filters())] == [ids[0]]
    assert set(i for i, _ in store.keyword_search("alice", 10, Filters(tenant="default"))) == {ids[0], ids[2]}
    assert store.keyword_search('alice" OR *', 10, Filters()) != []  # FTS syntax is quoted away, no error
    assert store.neighbours(segs[1]) == ("call Alice at 555 0199", "thanks Alice")
    assert [r.id for r in store.list_streams(tenant="other")] == ["b"]


def test_time_filters_and_delete(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.sqlite3")
    store.create_stream("a", "default", "tiny.en")
    first = store.commit_segment("a", final(0, "early words"), "tiny.en")
    cut = time.time()
    time.sleep(0.01)
    second = store.commit_segment("a", final(1, "late words"), "tiny.en")
    assert store.ids_matching(Filters(since=cut)) == [second]
    assert store.ids_matching(Filters(until=cut)) == [first]
    assert store.delete_stream("a") == [first, second]
    assert store.keyword_search("words", 10, Filters()) == []
    assert store.get_stream("a") is None and store.delete_stream("a") is None


def test_committed_segments_survive_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.sqlite3")
    store.create_stream("a", "default", "tiny.en")
    store.commit_segment("a", final(0, "durable"), "tiny.en")
    again = Store(tmp_path / "t.sqlite3")  # e.g. after a crash: WAL replays
    assert [s.text for s in again.segments_of("a")] == ["durable"]

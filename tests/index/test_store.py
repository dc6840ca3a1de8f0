from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import SmallDisk
from voxindex.engine.events import Final
from voxindex.engine.types import Word
from voxindex.errors import InvalidRequestError, StoreCorruptError, StoreUnavailableError
from voxindex.index.health import GiB, parse_reserve
from voxindex.index.records import Filters
from voxindex.index.sqlite import Store


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


def test_a_failed_write_is_rolled_back_reported_with_the_path_and_the_next_write_works(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "t.sqlite3")
    store.create_stream("a", "default", "tiny.en")
    other = sqlite3.connect(tmp_path / "t.sqlite3")  # a real SQLite failure, from outside
    other.execute(
        "CREATE TRIGGER no_b BEFORE INSERT ON segments WHEN new.stream_id = 'b'"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    )
    other.commit()
    store.create_stream("b", "default", "tiny.en")
    with pytest.raises(StoreUnavailableError, match=f"{tmp_path / 't.sqlite3'} cannot be written"):
        store.commit_segment("b", final(0, "never stored"), "tiny.en")
    assert store.fault == "unwritable"
    store.commit_segment("a", final(0, "stored after the failure"), "tiny.en")  # no transaction left open
    assert store.fault is None
    assert [s.text for s in store.segments_of("a")] == ["stored after the failure"]
    assert store.segments_of("b") == []


def test_a_full_disk_is_a_store_full_fault_and_space_returning_ends_it(small_disk: SmallDisk) -> None:
    store = Store(small_disk.path / "t.sqlite3")
    store.create_stream("a", "default", "tiny.en")
    store.commit_segment("a", final(0, "before the disk filled"), "tiny.en")
    small_disk.fill()
    with pytest.raises(StoreUnavailableError, match="is full"):
        for i in range(1, 200):  # the write-ahead log's last page may hold a commit or two
            store.commit_segment("a", final(i, "words that need space " * 20), "tiny.en")
    assert store.fault == "full"
    with pytest.raises(StoreUnavailableError, match="is full"):
        store.probe()
    assert store.segments_of("a")[0].text == "before the disk filled"  # reads go on
    small_disk.free()
    store.probe()
    assert store.fault is None
    store.close()


def test_a_new_store_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    store = Store(tmp_path / "d" / "t.sqlite3")
    store.close()
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["t.sqlite3"]  # no build leftovers
    (tmp_path / "d" / "t.sqlite3").write_bytes(b"")  # a store truncated to nothing is damage
    with pytest.raises(StoreCorruptError, match="is empty"):
        Store(tmp_path / "d" / "t.sqlite3")


@pytest.mark.parametrize(
    ("raw", "total", "reserve"),
    [
        ("", 100 * GiB, GiB),  # default: 1 GiB or 5 %, the smaller
        ("", 10 * GiB, GiB // 2),
        ("2GiB", 10 * GiB, 2 * GiB),
        ("500MB", 10 * GiB, 500_000_000),
        ("10%", 10 * GiB, GiB),
        ("1GiB, 5%", 10 * GiB, GiB // 2),
        ("1048576", 10 * GiB, 1 << 20),
    ],
)
def test_the_free_space_reserve(raw: str, total: int, reserve: int) -> None:
    assert parse_reserve(raw).of(total) == reserve


@pytest.mark.parametrize("raw", ["lots", "5 parsecs", "-1GiB", "%"])
def test_a_bad_reserve_is_refused_clearly(raw: str) -> None:
    with pytest.raises(InvalidRequestError, match="--store-min-free"):
        parse_reserve(raw)

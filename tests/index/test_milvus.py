"""The shared store when Milvus goes away: nothing is lost, finals wait and arrive in order."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import MilvusLite, SmallDisk
from tests.index.test_contract import MEETING, final
from voxindex.errors import StoreUnavailableError
from voxindex.index.milvus import MilvusIndex, MilvusUrl, expression, segment_key
from voxindex.index.records import Filters
from voxindex.index.search import Mode


@pytest.fixture
def outage(tmp_path: Path) -> MilvusLite:
    """A Milvus of this test's own, to stop and start."""
    server = MilvusLite(tmp_path / "milvus")
    yield server  # type: ignore[misc]
    server.stop()


def test_finals_wait_for_milvus_then_arrive_in_order_and_nothing_is_lost(
    outage: MilvusLite, tmp_path: Path
) -> None:
    index = MilvusIndex.open(outage.collection("outage"), tmp_path / "data", "r1", timeout_s=2.0)
    delivered: list[str] = []
    index.open_stream("r1-s", "tiny.en", "acme")
    index.commit("r1-s", final(0, MEETING[0]), "tiny.en")
    index.deliver("r1-s", lambda: delivered.append(MEETING[0]))
    deadline = time.monotonic() + 20
    while delivered != [MEETING[0]] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert delivered == [MEETING[0]]

    outage.stop()  # Milvus is gone; the stream goes on transcribing
    for i, text in enumerate(MEETING[1:], start=1):
        index.commit("r1-s", final(i, text), "tiny.en")
        index.deliver("r1-s", lambda text=text: delivered.append(text))  # type: ignore[misc]
    time.sleep(3)
    assert delivered == [MEETING[0]]  # held: Milvus has not acknowledged them
    assert index.outbox.pending >= 2 and not index.outbox.available
    assert not index.stats().available
    with pytest.raises(StoreUnavailableError):
        index.search("budget", 3, Mode.KEYWORD, Filters())  # reads say so (HTTP 503)

    outage.start()  # back, with its data
    deadline = time.monotonic() + 30
    while len(delivered) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert delivered == MEETING  # every final, in order
    assert index.outbox.available and index.outbox.pending == 0
    assert [s.text for s in index.segments_of("r1-s")] == MEETING
    index.close()


def test_a_restart_during_an_outage_sends_what_was_waiting(outage: MilvusLite, tmp_path: Path) -> None:
    index = MilvusIndex.open(outage.collection("restart"), tmp_path / "data", "r1", timeout_s=2.0)
    index.open_stream("r1-s", "tiny.en", "acme")
    eventually_sent = threading.Event()
    index.deliver("r1-s", eventually_sent.set)
    assert eventually_sent.wait(20)
    outage.stop()
    for i, text in enumerate(MEETING):
        index.commit("r1-s", final(i, text), "tiny.en")
    index.close()  # the process ends with three finals only in its local outbox
    outage.start()
    again = MilvusIndex.open(outage.collection("restart"), tmp_path / "data", "r1", timeout_s=2.0)
    deadline = time.monotonic() + 30
    while again.outbox.pending and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [s.text for s in again.segments_of("r1-s")] == MEETING
    again.close()


def test_the_outbox_is_bounded(outage: MilvusLite, tmp_path: Path) -> None:
    index = MilvusIndex.open(outage.collection("bounded"), tmp_path / "data", "r1", limit=3, timeout_s=1.0)
    outage.stop()
    index.open_stream("r1-s", "tiny.en", "acme")
    index.commit("r1-s", final(0, MEETING[0]), "tiny.en")
    index.commit("r1-s", final(1, MEETING[1]), "tiny.en")
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        index.commit("r1-s", final(2, MEETING[2]), "tiny.en")
    index.close()


def test_keys_urls_and_filters() -> None:
    assert segment_key("r1-abc", 3) == segment_key("r1-abc", 3) != segment_key("r2-abc", 3)
    assert 0 <= segment_key("x", 0) < 2**63
    url = MilvusUrl.parse("milvus://milvus.local:19531/transcripts?token=root:Milvus")
    assert (url.uri, url.collection, url.token) == ("http://milvus.local:19531", "transcripts", "root:Milvus")
    with pytest.raises(Exception, match="collection name"):
        MilvusUrl.parse("milvus://h:1/bad-name;drop")
    where = expression(Filters(tenant='a" or tenant != "', stream_id="s", since=1.5))
    assert 'tenant == "a\\" or tenant != \\""' in where  # quoted, not injected
    name = "c" + uuid.uuid4().hex[:8]
    assert MilvusUrl.parse(f"milvus://127.0.0.1/{name}").uri == "http://127.0.0.1:19530"


def test_a_full_local_journal_refuses_finals_clearly_and_the_outbox_recovers(
    milvus: MilvusLite, small_disk: SmallDisk
) -> None:
    """The outbox's journal is the replica's local SQLite: on a full disk a final is refused
    (store_unavailable), the sending thread survives, and everything stored reaches Milvus."""
    index = MilvusIndex.open(milvus.collection("journal"), small_disk.path / "data", "r1", timeout_s=2.0)
    index.open_stream("r1-j", "tiny.en", "acme")
    stored = [MEETING[0]]
    index.commit("r1-j", final(0, MEETING[0]), "tiny.en")
    small_disk.fill()
    with pytest.raises(StoreUnavailableError, match="is full"):
        for i in range(1, 200):  # the write-ahead log's last page may hold a commit or two
            index.commit("r1-j", final(i, f"{MEETING[1]} {i}"), "tiny.en")
            stored.append(f"{MEETING[1]} {i}")
    with pytest.raises(StoreUnavailableError):
        index.open_stream("r1-k", "tiny.en", "acme")
    time.sleep(1.0)
    assert index.outbox._thread is not None and index.outbox._thread.is_alive()
    small_disk.free()
    index.commit("r1-j", final(len(stored), MEETING[2]), "tiny.en")
    stored.append(MEETING[2])
    delivered = threading.Event()
    index.deliver("r1-j", delivered.set)
    assert delivered.wait(30)
    assert [s.text for s in index.segments_of("r1-j")] == stored  # in Milvus, every one, in order
    index.close()

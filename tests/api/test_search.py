"""Search what was said, seconds after it was said: real speech through a real server."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import numpy as np
import pytest

from tests.api.conftest import Server, Session, stream_audio
from tests.conftest import PROSE, Synth

GAP = np.zeros(12800, dtype=np.float32)
SENTENCES = [PROSE[4], PROSE[8], PROSE[9], PROSE[10]]  # expenses, airport train, Tuesday release, 12% sales


@pytest.fixture(scope="module")
def meeting(server: Server, synth: Synth) -> Session:
    audio = np.concatenate([GAP] + [np.concatenate([synth(s), GAP]) for s in SENTENCES])
    session = asyncio.run(stream_audio(server.ws, audio, speed=3.0))
    assert len(session.of("final")) == len(SENTENCES), session.of("final")
    return session


def stream_id(session: Session) -> str:
    return str(session.of("ready")[0]["stream_id"])


def search(server: Server, **params: object) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/search", params=params, timeout=30)


def wait_searchable(server: Server, session: Session) -> None:
    """Vectors are added off the engine thread; poll until this stream's segments are all in."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        hits = search(server, q="x", mode="vector", k=100, min_score=0, stream_id=stream_id(session))
        hits = hits.json()["hits"]
        if len(hits) == len(SENTENCES):
            return
        time.sleep(0.05)
    raise AssertionError("segments never became searchable by vector")


def test_paraphrase_finds_the_right_segment_first(server: Server, meeting: Session) -> None:
    wait_searchable(server, meeting)
    for query, expected in [
        ("how often do trains go to the airport", "airport"),
        ("when will the app be available to test", "Tuesday"),
        ("reimbursement deadline for trips", "expenses"),
    ]:
        for mode in ("vector", "hybrid"):
            hits = search(server, q=query, mode=mode, stream_id=stream_id(meeting)).json()["hits"]
            assert expected.lower() in hits[0]["text"].lower(), (query, mode, hits[0]["text"])
    hit = search(server, q="how often do trains go to the airport", k=3).json()["hits"][0]
    assert "airport" in hit["text"].lower()  # across every stream, too
    assert set(hit) >= {"segment_id", "stream_id", "text", "score", "start", "end", "context"}


def test_what_nobody_said_finds_nothing_unless_asked_for_the_nearest(
    server: Server, meeting: Session
) -> None:
    wait_searchable(server, meeting)
    sid = stream_id(meeting)
    for query in ("when does the flight to london board", "who won the football match"):
        body = search(server, q=query, stream_id=sid).json()
        assert body["hits"] == [] and body["min_score"] == 0.5, body
        nearest = search(server, q=query, stream_id=sid, min_score=0).json()["hits"]
        assert nearest and all(0.0 <= h["score"] < 0.5 for h in nearest)
    said = search(server, q="the train to the airport", stream_id=sid).json()["hits"]
    assert "airport" in said[0]["text"].lower() and said[0]["score"] > 0.9
    for bad in ("1.5", "-0.1", "much", "nan"):
        refused = search(server, q="train", min_score=bad)
        assert refused.status_code == 400 and "min_score" in refused.text, refused.text


def test_keywords_find_names_and_numbers(server: Server, meeting: Session) -> None:
    hits = search(server, q="Tuesday", mode="keyword", stream_id=stream_id(meeting)).json()["hits"]
    assert len(hits) == 1 and "tuesday" in hits[0]["text"].lower()
    number = search(server, q="12", mode="keyword", stream_id=stream_id(meeting)).json()["hits"]
    assert len(number) == 1 and "12" in number[0]["text"]
    hybrid = search(server, q="12%", stream_id=stream_id(meeting)).json()["hits"]
    assert "12" in hybrid[0]["text"]
    context = number[0]["context"]
    assert "tuesday" in context["before"].lower() and context["after"] == ""


def test_filters(server: Server, meeting: Session) -> None:
    wait_searchable(server, meeting)
    first = meeting.of("final")[0]
    assert search(server, q="expenses", stream_id="no-such-stream").json()["hits"] == []
    future = time.time() + 3600
    assert search(server, q="expenses", since=future).json()["hits"] == []
    assert search(server, q="expenses", until="2001-01-01T00:00:00Z", mode="vector").json()["hits"] == []
    hits = search(server, q="expenses", since="2020-01-01", stream_id=stream_id(meeting)).json()["hits"]
    assert hits[0]["text"] == first["text"]


def parse_cues(body: str, sep: str) -> list[tuple[float, float, str]]:
    pattern = re.compile(rf"(\d\d):(\d\d):(\d\d){sep}(\d\d\d) --> (\d\d):(\d\d):(\d\d){sep}(\d\d\d)\n(.+)")
    cues = []
    for m in pattern.finditer(body):
        g = [int(x) for x in m.groups()[:8]]
        cues.append(
            (
                g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000,
                g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
                m.group(9),
            )
        )
    return cues


def test_transcript_exports(server: Server, meeting: Session) -> None:
    base = f"{server.url}/v1/streams/{stream_id(meeting)}/transcript"
    finals = meeting.of("final")
    as_json = httpx.get(base).json()
    assert [s["text"] for s in as_json["segments"]] == [f["text"] for f in finals]
    assert as_json["segments"][0]["words"][0]["word"] == finals[0]["words"][0]["word"]
    assert httpx.get(base, params={"format": "txt"}).text.splitlines() == [f["text"] for f in finals]
    srt = httpx.get(base, params={"format": "srt"})
    assert srt.headers["content-type"].startswith("application/x-subrip")
    assert [int(n) for n in re.findall(r"^(\d+)$", srt.text, re.M)] == list(range(1, len(finals) + 1))
    vtt = httpx.get(base, params={"format": "vtt"}).text
    assert vtt.startswith("WEBVTT\n\n")
    for cues in (parse_cues(srt.text, ","), parse_cues(vtt, r"\.")):
        assert [c[2] for c in cues] == [f["text"] for f in finals]
        for (start, end, _), f in zip(cues, finals, strict=True):
            assert start == pytest.approx(f["start"], abs=0.001) and start < end
    listed = httpx.get(f"{server.url}/v1/streams").json()["streams"]
    assert any(s["id"] == stream_id(meeting) and s["segments"] == len(finals) for s in listed)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": ""}, "empty"),
        ({"q": "   "}, "empty"),
        ({"q": "a", "k": 0}, "k must be"),
        ({"q": "a", "k": 101}, "k must be"),
        ({"q": "a", "k": "many"}, "integer"),
        ({"q": "x" * 5000}, "limit"),
        ({"q": "a", "since": "last tuesday"}, "since"),
        ({"q": "a", "until": "2024-13-45"}, "until"),
        ({"q": "a", "since": 2000, "until": 1000}, "before"),
        ({"q": "a", "mode": "psychic"}, "mode"),
    ],
)
def test_bad_search_input_is_a_400(server: Server, params: dict[str, object], message: str) -> None:
    response = search(server, **params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and message in error["message"]


def test_unknown_stream_and_format(server: Server, meeting: Session) -> None:
    assert httpx.get(f"{server.url}/v1/streams/nope/transcript").status_code == 404
    bad = httpx.get(f"{server.url}/v1/streams/{stream_id(meeting)}/transcript", params={"format": "docx"})
    assert bad.status_code == 400 and "format" in bad.json()["error"]["message"]
    assert httpx.delete(f"{server.url}/v1/streams/nope").status_code == 404


async def test_a_final_is_searchable_as_soon_as_it_arrives_and_delete_forgets_it(
    server: Server, synth: Synth
) -> None:
    audio = np.concatenate([GAP, synth(PROSE[11]), GAP])
    session = await stream_audio(server.ws, audio, speed=3.0)
    sid = stream_id(session)
    async with httpx.AsyncClient(base_url=server.url) as client:
        keyword = (
            await client.get("/v1/search", params={"q": "break", "mode": "keyword", "stream_id": sid})
        ).json()
        assert len(keyword["hits"]) == 1  # committed before `final` was sent: no wait at all
        assert (await client.delete(f"/v1/streams/{sid}")).status_code == 200
        for mode in ("keyword", "vector", "hybrid"):
            left = (
                await client.get("/v1/search", params={"q": "short break discussion", "mode": mode, "k": 100})
            ).json()
            assert all(h["stream_id"] != sid for h in left["hits"])
        assert (await client.get(f"/v1/streams/{sid}/transcript")).status_code == 404


def test_search_api_is_in_the_openapi_document(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    params = {p["name"] for p in spec["paths"]["/v1/search"]["get"]["parameters"]}
    assert params >= {"q", "k", "mode", "stream_id", "since", "until"}
    assert {"/v1/streams", "/v1/streams/{stream_id}/transcript"} <= set(spec["paths"])

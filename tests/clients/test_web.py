"""The browser workspace in Debian's real Chromium (headless) against a real voxindex server:
Live on a fake microphone playing real speech, Library with a dropped WAV, Search whose hits play
the audio where it was said; a screenshot of each view is left in test-artifacts/ for review."""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.api.conftest import write_wav
from tests.conftest import FIXTURES, KeyedServer, corpus_wer, recordings, serve_keyed
from voxindex.audio import decode_file
from voxindex.models.whisper import WhisperModel

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("VOXINDEX_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"  # a hit plays after its fetches, as a click would
TRUST_EDGE = "--ignore-certificate-errors"  # the test edge's certificate is self-signed
LIBRIVOX, PREFIX = FIXTURES / "librivox", "sense_and_sensibility_01_austen_64kb"
LIBRIVOX_TEXT = {r.path.stem.rsplit("-", 1)[1]: r.transcript for r in recordings("librivox")}


def needs_chromium() -> None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        message = (
            "BROWSER TEST SKIPPED: Debian's chromium and chromium-driver are not installed "
            "(scripts/setup.sh test installs them when it runs as root with apt-get)"
        )
        warnings.warn(message, stacklevel=2)
        pytest.skip(message)


def chromium(flags: list[str]) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
        *flags,
    ]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Chromium whose microphone plays one real recording."""
    yield from fake_microphone(decode_file(LIBRIVOX / f"{PREFIX}-0880.wav"), tmp_path)


def fake_microphone(speech: np.ndarray, tmp_path: Path, *flags: str) -> Iterator[Any]:
    """Chromium whose microphone plays ``speech`` (then 15 s of silence, so we stop before the
    file loops)."""
    needs_chromium()
    capture = tmp_path / "speech.wav"
    write_wav(capture, np.concatenate([speech, np.zeros(16000 * 15, np.float32)]))
    driver = chromium(
        [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={capture}",
            *flags,
        ]
    )
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def workspace(tiny: WhisperModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedServer]:
    """This module's own server (auth on), so its library and search hold only what these tests
    put there."""
    with serve_keyed(tiny, tmp_path_factory.mktemp("workspace")) as srv:
        yield srv


# What the page did, in order, as the user would have seen it: interim text shown, finals added,
# the upload bar's values, and where the player was each time it started playing.
JOURNAL = """
window.__vx = {order: [], progress: [], played: []};
const interim = document.getElementById("interim"), transcript = document.getElementById("transcript");
new MutationObserver(() => { if (interim.textContent.trim()) __vx.order.push("interim"); })
  .observe(interim, {childList: true, characterData: true, subtree: true});
new MutationObserver((changes) => {
  for (const c of changes)
    for (const n of c.addedNodes) if (n.classList && n.classList.contains("final")) __vx.order.push("final");
}).observe(transcript, {childList: true});
const bar = document.getElementById("upload-progress");
new MutationObserver(() => __vx.progress.push(Number(bar.value)))
  .observe(bar, {attributes: true, attributeFilter: ["value"]});
document.getElementById("player")
  .addEventListener("playing", (e) => __vx.played.push(e.target.currentTime));
"""


def open_workspace(page: Any, url: str, key: str) -> None:
    """Open the app at ``url`` with ``key`` in the fragment; the page takes it out of the
    address bar. The journal is recorded from then on."""
    from selenium.webdriver.common.by import By

    page.get(f"{url}/#token={key}")
    # the module script may finish after get() returns on a busy machine: wait for it
    wait_until(lambda: page.find_element(By.ID, "token").get_attribute("value"), 10, "the page script")
    assert "token" not in page.current_url
    page.execute_script(JOURNAL)


def start_microphone(page: Any) -> None:
    from selenium.webdriver.common.by import By

    page.find_element(By.ID, "start").click()
    wait_until(lambda: page.find_element(By.ID, "status").text == "listening", 20, "the stream to open")


def stop_stream(page: Any) -> None:
    """Stop, as a user does, and wait for the stream's last finals and ``closed``."""
    from selenium.webdriver.common.by import By

    page.find_element(By.ID, "stop").click()
    wait_until(lambda: page.find_element(By.ID, "status").text == "stream closed", 30, "the stream to close")


def rest_search(srv: KeyedServer, q: str, stream_id: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {srv.api_key}"}
    params = {"q": q, "k": "20", "stream_id": stream_id}
    r = httpx.get(f"{srv.url}/v1/search", params=params, headers=headers, timeout=30)
    r.raise_for_status()
    return list(r.json()["hits"])


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one


def search_and_play(page: Any, srv: KeyedServer, stream_id: str, query: str) -> dict[str, Any]:
    """Search from the Search view as a user does (typing, no button), scoped to ``stream_id``
    with the stream filter; click the first hit and check it plays from the hit's start with
    the playing word highlighted. Returns the hit as the REST API reports it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page.find_element(By.ID, "tab-search").click()
    wait_until(
        lambda: page.find_elements(By.CSS_SELECTOR, f'#filter-stream option[value="{stream_id}"]'),
        10,
        "the stream in the filter",
    )
    Select(page.find_element(By.ID, "filter-stream")).select_by_value(stream_id)
    page.find_element(By.ID, "query").send_keys(query)  # results come as one types (debounced)
    results = wait_until(lambda: page.find_elements(By.CSS_SELECTOR, "li.result"), 20, "search results")
    assert {r.get_attribute("data-stream") for r in results} == {stream_id}  # the filter holds
    marks = [m.text.lower() for m in results[0].find_elements(By.TAG_NAME, "mark")]
    assert marks and any(m.startswith(w) for m in marks for w in query.lower().split()), marks
    expected = rest_search(srv, query, stream_id)[0]
    assert expected["text"].strip() in results[0].text  # the page shows the API's best hit first
    relevance = results[0].find_element(By.CSS_SELECTOR, ".relevance").text
    assert relevance == f"{round(expected['score'] * 100)}%", relevance  # how sure, as the API says
    shot(page, "web-search.png")
    results[0].find_element(By.CSS_SELECTOR, "button.hit-open").click()
    played = wait_until(lambda: page.execute_script("return __vx.played"), 20, "the audio to play")
    assert abs(played[0] - expected["start"]) <= 0.3, (played, expected)
    hit = page.find_element(By.CSS_SELECTOR, "#detail-transcript .segment.hit")
    assert hit.get_attribute("data-index") == str(expected["segment_index"])

    def now() -> float:
        return float(page.execute_script("return document.getElementById('player').currentTime"))

    wait_until(lambda: now() > expected["start"] + 0.5, 10, "the audio to advance")
    playing = wait_until(
        lambda: page.find_elements(By.CSS_SELECTOR, "#detail-transcript .word.playing"),
        10,
        "a highlighted word",
    )
    word = playing[0]
    assert float(word.get_attribute("data-start")) <= now() + 0.5  # the word being said, not a later one
    return expected


def nothing_found(page: Any, query: str) -> None:
    """A query for something nobody said: the page says nothing was found, and on request shows
    the nearest segments marked as not matches; a new query asks for matches again."""
    from selenium.webdriver.common.by import By

    page.find_element(By.ID, "tab-search").click()
    page.find_element(By.ID, "query").send_keys(query)
    empty = wait_until(lambda: page.find_elements(By.CSS_SELECTOR, "#results li.empty"), 20, "no results")
    assert empty[0].text.startswith("Nothing found") and not page.find_elements(By.CSS_SELECTOR, "li.result")
    page.find_element(By.ID, "show-nearest").click()
    nearest = wait_until(lambda: page.find_elements(By.CSS_SELECTOR, "li.result.nearest"), 20, "the nearest")
    assert all(int(r.find_element(By.CSS_SELECTOR, ".relevance").text[:-1]) < 50 for r in nearest)
    assert "Not matches" in page.find_element(By.CSS_SELECTOR, "#results li.empty").text
    page.find_element(By.ID, "query").clear()


def delete_in_library(page: Any, srv: KeyedServer, stream_id: str, query: str, audio: str) -> None:
    """Delete the open stream from its Library view: a dismissed confirmation keeps it; once
    confirmed it leaves the library, the page's results and the index, and its audio is gone."""
    from selenium.webdriver.common.by import By

    row = f'#library li.item[data-id="{stream_id}"]'
    page.find_element(By.ID, "delete").click()
    page.switch_to.alert.dismiss()
    time.sleep(0.5)
    assert page.find_elements(By.CSS_SELECTOR, row) and rest_search(srv, query, stream_id)
    page.find_element(By.ID, "delete").click()
    alert = page.switch_to.alert
    assert "cannot be undone" in alert.text
    alert.accept()
    wait_until(lambda: not page.find_elements(By.CSS_SELECTOR, row), 20, "the stream to leave the library")
    assert page.find_element(By.ID, "detail").get_attribute("hidden") is not None
    page.find_element(By.ID, "tab-search").click()
    assert not page.find_elements(By.CSS_SELECTOR, f'li.result[data-stream="{stream_id}"]')
    assert rest_search(srv, query, stream_id) == []
    headers = {"Authorization": f"Bearer {srv.api_key}"}
    assert httpx.get(f"{srv.url}{audio}", headers=headers, timeout=10).status_code == 404


@pytest.fixture
def librivox_microphone(tmp_path: Path) -> Iterator[Any]:
    """Chromium whose microphone plays two real read-speech recordings with a pause between."""
    first, second = (decode_file(LIBRIVOX / f"{PREFIX}-{n}.wav") for n in ("0870", "0890"))
    gap = np.zeros(12000, np.float32)
    yield from fake_microphone(np.concatenate([gap, first, gap, second]), tmp_path, AUTOPLAY)


def test_live_interim_then_final_kept_audio_and_a_hit_that_plays_there(
    librivox_microphone: Any, workspace: KeyedServer
) -> None:
    """Live view on the microphone with "Keep audio": interim text comes before each final, the
    latency is shown; afterwards a typed search finds what was said and plays the kept audio
    from the hit's start."""
    from selenium.webdriver.common.by import By

    page = librivox_microphone
    open_workspace(page, workspace.url, workspace.api_key)
    page.find_element(By.ID, "record").click()
    start_microphone(page)
    wait_until(
        lambda: page.execute_script("return document.getElementById('level').value") > 0.2, 20, "a level"
    )
    wait_until(
        lambda: len(page.find_elements(By.CSS_SELECTOR, "#transcript .segment.final")) >= 2, 60, "finals"
    )
    shot(page, "web-live.png")
    stop_stream(page)

    order = page.execute_script("return __vx.order")
    assert "interim" in order and order.index("interim") < order.index("final"), order
    assert page.find_element(By.ID, "interim").text == ""  # nothing pending once closed
    assert re.fullmatch(
        r"latency \d+\.\d\d s · median \d+\.\d\d s over \d+", page.find_element(By.ID, "latency").text
    )
    finals = page.find_elements(By.CSS_SELECTOR, "#transcript .segment.final")
    assert all("–" in f.find_element(By.CLASS_NAME, "time").text for f in finals)  # each shows its times
    words = page.find_elements(By.CSS_SELECTOR, "#transcript .word")
    assert words and all(re.fullmatch(r"confidence [01]\.\d\d", w.get_attribute("title")) for w in words)
    said = " ".join(w.text for w in words)
    assert corpus_wer([(f"{LIBRIVOX_TEXT['0870']} {LIBRIVOX_TEXT['0890']}", said)]) <= 0.25, said

    stream_id = page.find_element(By.ID, "transcript").get_attribute("data-stream")
    nothing_found(page, "who won the football match")
    search_and_play(page, workspace, stream_id, "cold hearted selfish")
    delete_in_library(page, workspace, stream_id, "cold hearted selfish", f"/v1/streams/{stream_id}/audio")


@pytest.fixture
def autoplay_browser(tmp_path: Path) -> Iterator[Any]:
    needs_chromium()
    driver = chromium([AUTOPLAY])
    try:
        yield driver
    finally:
        driver.quit()


def library_id(page: Any, title: str) -> str | None:
    """The id of the Library row titled ``title``, read in one go: the list is redrawn each
    second while something transcribes, so elements found one call earlier go stale."""
    found = page.execute_script(
        "return [...document.querySelectorAll('#library li.item')]"
        ".find((li) => li.querySelector('.title')?.textContent === arguments[0])?.dataset.id",
        title,
    )
    return str(found) if found else None


def drop_file(page: Any, target: str, path: Path, mime: str) -> None:
    """Drop ``path`` on element ``target`` as a user dragging it from their desktop would."""
    page.execute_script(
        """
        const [target, name, mime, data] = arguments;
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: mime}));
        const at = document.getElementById(target);
        const how = {dataTransfer: transfer, bubbles: true, cancelable: true};
        at.dispatchEvent(new DragEvent("dragover", how));
        at.dispatchEvent(new DragEvent("drop", how));
        """,
        target,
        path.name,
        mime,
        base64.b64encode(path.read_bytes()).decode(),
    )


def test_a_dropped_recording_uploads_is_indexed_plays_from_a_hit_and_is_deleted(
    autoplay_browser: Any, workspace: KeyedServer, tmp_path: Path
) -> None:
    """Library: a WAV of real speech dropped on the page uploads with a progress bar, shows as
    transcribing then indexed; a search hit in it plays the recording from the hit's start;
    delete (confirmed) takes it out of the library, the search results and the index."""
    from selenium.webdriver.common.by import By

    clips = [decode_file(LIBRIVOX / f"{PREFIX}-{n}.wav") for n in ("0920", "0930", "0880")]
    gap = np.zeros(8000, np.float32)
    wav = tmp_path / "dashwood.wav"
    audio = np.concatenate([gap, *[np.concatenate([c, gap]) for c in clips]])
    write_wav(wav, audio)
    page = autoplay_browser
    open_workspace(page, workspace.url, workspace.api_key)
    page.find_element(By.ID, "tab-library").click()
    drop_file(page, "dropzone", wav, "audio/wav")
    wait_until(lambda: page.find_element(By.ID, "upload-label").text.startswith("Uploaded"), 30, "the upload")
    progress = page.execute_script("return __vx.progress")
    assert progress and progress[-1] == 100 and progress == sorted(progress), progress
    recording_id = wait_until(lambda: library_id(page, "dashwood.wav"), 10, "the recording in the library")

    def badge() -> str:  # read in one go: the list is redrawn each second while it transcribes
        row = f'#library li.item[data-id="{recording_id}"] .badge'
        return str(page.execute_script("return document.querySelector(arguments[0])?.textContent || ''", row))

    wait_until(lambda: badge() == "indexed", 120, "the recording to be indexed")
    top = page.find_element(By.CSS_SELECTOR, "#library li.item")
    assert top.get_attribute("data-id") == recording_id  # newest first
    assert f"· {round(audio.size / 16000)} s ·" in top.text  # its duration
    page.find_element(By.CSS_SELECTOR, f'#library li.item[data-id="{recording_id}"] button').click()
    wait_until(
        lambda: page.find_elements(By.CSS_SELECTOR, "#detail-transcript .segment"), 20, "its transcript"
    )
    shot(page, "web-library.png")

    search_and_play(page, workspace, recording_id, "respectable")

    delete_in_library(page, workspace, recording_id, "respectable", f"/v1/recordings/{recording_id}/media")


@pytest.fixture
def pausing_microphone(tmp_path: Path) -> Iterator[Any]:
    """Chromium whose microphone plays one recording, four seconds of quiet, then another."""
    first, second = (decode_file(LIBRIVOX / f"{PREFIX}-{n}.wav") for n in ("0870", "0890"))
    gap = np.zeros(12000, np.float32)
    yield from fake_microphone(np.concatenate([gap, first, gap, gap, gap, gap, second]), tmp_path)


def test_a_server_restart_mid_stream_is_reconnected_with_times_going_on(
    pausing_microphone: Any, restartable: Any
) -> None:
    """The server restarts between two utterances: the page reconnects by itself, says so in the
    transcript, sends what the microphone heard meanwhile, and the new stream's finals go on
    from the time the first stream reached (as the Python client does), not from zero."""
    from selenium.webdriver.common.by import By

    start, stop = restartable
    page = pausing_microphone
    page.get(start())
    start_microphone(page)
    wait_until(
        lambda: page.find_elements(By.CSS_SELECTOR, "#transcript .segment.final"), 30, "the first final"
    )
    first_stream = page.find_element(By.ID, "transcript").get_attribute("data-live")
    stop()  # drained: the first stream's finals, then 1012
    start()
    wait_until(
        lambda: len(page.find_elements(By.CSS_SELECTOR, "#transcript .segment.final")) >= 2,
        60,
        "a final after",
    )
    transcript = page.find_element(By.ID, "transcript")
    assert transcript.get_attribute("data-live") not in (None, first_stream)  # a new stream
    assert transcript.get_attribute("data-stream") is None  # its times are not the player's
    assert "connection lost at" in page.find_element(By.CSS_SELECTOR, "#transcript .notice").text
    stop_stream(page)
    finals = page.find_elements(By.CSS_SELECTOR, "#transcript .segment.final")
    starts = [float(f.get_attribute("data-start")) for f in finals]
    assert starts == sorted(starts), starts
    second_onset = (12000 * 5 + 7.1 * 16000) / 16000  # where the second recording starts on the microphone
    after = [f for f, t in zip(finals, starts, strict=True) if t > 7.5]
    assert after and abs(float(after[0].get_attribute("data-start")) - second_onset) <= 1.0, starts
    said = " ".join(w.text for f in after for w in f.find_elements(By.CLASS_NAME, "word"))
    assert corpus_wer([(LIBRIVOX_TEXT["0890"], said)]) <= 0.25, said


CONVERSATION_S = 25.0


@pytest.fixture
def conversation_browser(tmp_path: Path) -> Iterator[Any]:
    """Chromium whose microphone plays two real people taking turns. The second says one turn
    long enough to be told apart by the engine's rule (``MIN_NEW_S`` of voice: "eight of spades,
    four of clubs, seven of hearts"); with only turns under it (seed 3: "ten of clubs", "seven of
    clubs", ~1 s of voice each) a new speaker needs a window clearly unlike the first
    (``NEW_ALONE``), and these two readers' short windows sit at 0.59-0.62 cosine, on that edge:
    whether they split then depended on where the browser's audio fell on the 32 ms VAD chunks."""
    from tests.conversations import conversation, voices

    audio, _ = conversation(voices(), ["librivox", "cards"], turns=4, seed=4)
    assert audio.size / 16000 <= CONVERSATION_S
    yield from fake_microphone(audio, tmp_path)


def test_speakers_are_coloured_when_asked_for(conversation_browser: Any, workspace: KeyedServer) -> None:
    """ "Label speakers" on, two real people on the microphone: finals carry a speaker tag and
    their words the speaker's colour, for both people."""
    from selenium.webdriver.common.by import By

    page = conversation_browser
    open_workspace(page, workspace.url, workspace.api_key)
    page.find_element(By.ID, "diarize").click()
    start_microphone(page)
    time.sleep(CONVERSATION_S + 3)  # the conversation plays, and its finals arrive
    stop_stream(page)
    tags = {e.text for e in page.find_elements(By.CSS_SELECTOR, ".segment .speaker")}
    assert tags and tags <= {"Speaker 0", "Speaker 1"}, tags
    words = page.find_elements(By.CSS_SELECTOR, ".segment .word")
    colours = {e.value_of_css_property("color") for e in words}
    assert len(colours) == 2, (
        tags,
        colours,
        [f.text for f in page.find_elements(By.CSS_SELECTOR, ".segment.final")],
    )  # two speakers, two colours
    line = page.find_element(By.CSS_SELECTOR, ".segment.final").text
    assert "  " not in line and len(line.split()) >= 4  # words spaced as text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.save_screenshot(str(ARTIFACTS / "web-speakers.png"))


def test_a_bad_token_is_explained_on_the_page(browser: Any, workspace: KeyedServer) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{workspace.url}/#token=vxk_bad_token")
    browser.find_element(By.ID, "start").click()
    wait_until(lambda: browser.find_element(By.ID, "message").is_displayed(), 20, "an error message")
    assert "refused the token" in browser.find_element(By.ID, "message").text


def test_a_denied_microphone_is_explained(workspace: KeyedServer) -> None:
    from selenium.webdriver.common.by import By

    needs_chromium()
    driver = chromium(["--deny-permission-prompts", "--use-fake-device-for-media-stream"])
    try:
        driver.get(f"{workspace.url}/#token={workspace.api_key}")
        driver.find_element(By.ID, "start").click()
        wait_until(lambda: driver.find_element(By.ID, "message").is_displayed(), 20, "an error message")
        assert "Microphone access was denied" in driver.find_element(By.ID, "message").text
        assert driver.find_element(By.ID, "status").text == "microphone unavailable"
    finally:
        driver.quit()


def test_the_workspace_works_behind_the_tls_edge(
    workspace: KeyedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind the shipped nginx over HTTPS: the page loads, the microphone streams over WSS and
    its finals come back, a dropped WAV uploads and is indexed; the key is in no log line, not
    nginx's access log and not the server's."""
    from selenium.webdriver.common.by import By

    from tests.deploy.conftest import start_nginx

    caplog.set_level(logging.INFO)
    edge = start_nginx(tmp_path / "nginx", [workspace.url.removeprefix("http://")])
    speech = decode_file(LIBRIVOX / f"{PREFIX}-0870.wav")
    drivers = fake_microphone(np.concatenate([np.zeros(8000, np.float32), speech]), tmp_path, TRUST_EDGE)
    page = next(drivers)
    try:
        open_workspace(page, edge.url, workspace.api_key)
        start_microphone(page)
        final = wait_until(
            lambda: page.find_elements(By.CSS_SELECTOR, "#transcript .segment.final"), 30, "a final"
        )
        said = " ".join(w.text for w in final[0].find_elements(By.CLASS_NAME, "word"))
        assert corpus_wer([(LIBRIVOX_TEXT["0870"], said)]) <= 0.25, said
        stop_stream(page)

        wav = tmp_path / "edge.wav"
        write_wav(wav, speech)
        page.find_element(By.ID, "tab-library").click()
        drop_file(page, "dropzone", wav, "audio/wav")
        wait_until(
            lambda: page.find_element(By.ID, "upload-label").text.startswith("Uploaded"), 30, "the upload"
        )
        recording_id = wait_until(lambda: library_id(page, "edge.wav"), 10, "the recording in the library")
        badge = f'#library li.item[data-id="{recording_id}"] .badge'
        wait_until(
            lambda: (
                page.execute_script("return document.querySelector(arguments[0])?.textContent", badge)
                == "indexed"
            ),
            60,
            "the upload to be indexed",
        )
    finally:
        drivers.close()
        edge.stop()
    log = edge.log()
    assert "/v1/stream" in log and "/v1/recordings" in log  # both went through the edge
    assert workspace.api_key not in log
    assert not [r for r in caplog.records if workspace.api_key in r.getMessage()]

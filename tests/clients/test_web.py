"""The browser app in Debian's real Chromium (headless), its fake microphone playing real speech
into a real voxindex server: the page's transcript, search, and a screenshot as an artifact."""

from __future__ import annotations

import os
import shutil
import time
import warnings
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.api.conftest import pcm16
from tests.conftest import PROSE, KeyedServer, Synth, corpus_wer

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("VOXINDEX_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


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
def browser(synth: Synth, tmp_path: Path) -> Iterator[Any]:
    gap = np.zeros(12000, np.float32)
    yield from fake_microphone(np.concatenate([gap, synth(PROSE[10]), gap, synth(PROSE[11])]), tmp_path)


def fake_microphone(speech: np.ndarray, tmp_path: Path) -> Iterator[Any]:
    """Chromium whose microphone plays ``speech`` (then 15 s of silence, so we stop before the
    file loops)."""
    needs_chromium()
    speech = np.concatenate([speech, np.zeros(16000 * 15, np.float32)])
    capture = tmp_path / "speech.wav"
    with wave.open(str(capture), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm16(speech))
    driver = chromium(
        [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={capture}",
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


def test_the_page_streams_the_microphone_and_searches(browser: Any, keyed_server: KeyedServer) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{keyed_server.url}/#token={keyed_server.api_key}")
    # the page takes the token out of the address bar once its module script has run, which a
    # busy machine may finish after get() returns: wait for the script, then check the address
    wait_until(lambda: browser.find_element(By.ID, "token").get_attribute("value"), 10, "the page script")
    assert "token" not in browser.current_url
    browser.find_element(By.ID, "start").click()
    wait_until(lambda: browser.find_element(By.ID, "status").text == "listening", 20, "the stream to open")
    reference = f"{PROSE[10]} {PROSE[11]}"

    def transcript() -> str:
        return " ".join(
            e.text.split(" ", 1)[-1] for e in browser.find_elements(By.CSS_SELECTOR, ".segment.final")
        )

    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".segment.final")) >= 2, 60, "two finals")
    browser.find_element(By.ID, "stop").click()
    wait_until(
        lambda: browser.find_element(By.ID, "status").text == "stream closed", 30, "the stream to close"
    )
    assert corpus_wer([(reference, transcript())]) <= 0.20, transcript()
    times = browser.find_elements(By.CSS_SELECTOR, ".segment .time")
    assert times and all("–" in t.text for t in times)  # every segment shows its times

    browser.find_element(By.ID, "query").send_keys("sales northern region")
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    results = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "li.result"), 20, "search results")
    results[0].click()
    hit = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".segment.hit"), 5, "the jump to the hit")
    assert "northern" in hit[0].text.lower()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "web-app.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


CONVERSATION_S = 25.0


@pytest.fixture
def conversation_browser(tmp_path: Path) -> Iterator[Any]:
    """Chromium whose microphone plays two real people taking turns."""
    from tests.conversations import conversation, voices

    audio, _ = conversation(voices(), ["librivox", "cards"], turns=4, seed=3)
    assert audio.size / 16000 <= CONVERSATION_S
    yield from fake_microphone(audio, tmp_path)


def test_speakers_are_coloured_when_asked_for(conversation_browser: Any, keyed_server: KeyedServer) -> None:
    """ "Label speakers" on, two real people on the microphone: finals carry a speaker tag and
    their words the speaker's colour, for both people."""
    from selenium.webdriver.common.by import By

    page = conversation_browser
    page.get(f"{keyed_server.url}/#token={keyed_server.api_key}")
    wait_until(lambda: page.find_element(By.ID, "token").get_attribute("value"), 10, "the page script")
    page.find_element(By.ID, "diarize").click()
    page.find_element(By.ID, "start").click()
    wait_until(lambda: page.find_element(By.ID, "status").text == "listening", 20, "the stream to open")
    time.sleep(CONVERSATION_S + 3)  # the conversation plays, and its finals arrive
    page.find_element(By.ID, "stop").click()
    wait_until(lambda: page.find_element(By.ID, "status").text == "stream closed", 30, "the stream to close")
    tags = {e.text for e in page.find_elements(By.CSS_SELECTOR, ".segment .speaker")}
    assert tags and tags <= {"Speaker 0", "Speaker 1"}, tags
    words = page.find_elements(By.CSS_SELECTOR, ".segment .word")
    assert len({e.value_of_css_property("color") for e in words}) == 2  # two speakers, two colours
    line = page.find_element(By.CSS_SELECTOR, ".segment.final").text
    assert "  " not in line and len(line.split()) >= 4  # words spaced as text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.save_screenshot(str(ARTIFACTS / "web-speakers.png"))


def test_a_bad_token_is_explained_on_the_page(browser: Any, keyed_server: KeyedServer) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{keyed_server.url}/#token=vxk_bad_token")
    browser.find_element(By.ID, "start").click()
    wait_until(lambda: browser.find_element(By.ID, "message").is_displayed(), 20, "an error message")
    assert "refused the token" in browser.find_element(By.ID, "message").text


def test_a_denied_microphone_is_explained(keyed_server: KeyedServer) -> None:
    from selenium.webdriver.common.by import By

    needs_chromium()
    driver = chromium(["--deny-permission-prompts", "--use-fake-device-for-media-stream"])
    try:
        driver.get(f"{keyed_server.url}/#token={keyed_server.api_key}")
        driver.find_element(By.ID, "start").click()
        wait_until(lambda: driver.find_element(By.ID, "message").is_displayed(), 20, "an error message")
        assert "Microphone access was denied" in driver.find_element(By.ID, "message").text
        assert driver.find_element(By.ID, "status").text == "microphone unavailable"
    finally:
        driver.quit()

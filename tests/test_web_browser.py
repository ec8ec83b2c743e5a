"""The web inbox in a real browser: Debian's chromium, headless, driven by selenium.

Skipped only where ``/usr/bin/chromium`` is missing and ``CI`` is unset; in
CI (``.ci/run`` installs chromium) they always run.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from _web_flows import approval
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from pausegraph import MemoryCheckpointer, Runner
from pausegraph.checkpointers import Checkpointer
from pausegraph.web import app

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="needs /usr/bin/chromium (apt-get install chromium chromium-driver)",
)


XSS = "<script>document.title='pwned'</script>"


@pytest.fixture
def store() -> Checkpointer:
    return MemoryCheckpointer()


@pytest.fixture
def url(store: Checkpointer) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(app([approval()], store), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1100,900")
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def start(store: Checkpointer, run_id: str, question: str) -> None:
    Runner(approval(), store).run(run_id, {"question": question, "amount": 120})


def test_answering_in_the_inbox_finishes_the_run_on_its_page(
    store: Checkpointer, url: str, browser: webdriver.Chrome
) -> None:
    start(store, "order-1", "ship it?")
    browser.get(url + "/")
    card = browser.find_element(By.CSS_SELECTOR, "section.interrupt[data-run='order-1']")
    assert '"ship it?"' in card.find_element(By.CSS_SELECTOR, "pre.payload").text
    card.find_element(By.TAG_NAME, "textarea").send_keys('{"ok": true}')
    card.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("/runs/approval/order-1"))
    assert browser.find_element(By.ID, "status").text == "done"
    assert "booked after {'ok': True}" in browser.find_element(By.ID, "values").text


def test_a_script_in_a_payload_shows_as_text(
    store: Checkpointer, url: str, browser: webdriver.Chrome
) -> None:
    start(store, "order-2", XSS)
    browser.get(url + "/")
    assert browser.title != "pwned"
    assert XSS in browser.find_element(By.CSS_SELECTOR, "pre.payload").text
    browser.get(url + "/runs/approval/order-2")
    assert browser.title != "pwned"
    assert XSS in browser.find_element(By.CSS_SELECTOR, "pre.payload").text


def test_a_wrong_answer_shows_the_error_next_to_the_field(
    store: Checkpointer, url: str, browser: webdriver.Chrome
) -> None:
    start(store, "order-3", "ok?")
    before = store.list("approval", "order-3")
    browser.get(url + "/")
    browser.find_element(By.TAG_NAME, "textarea").send_keys("{yes please")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "form .error"))
    )
    assert error.text.startswith("not JSON")
    field = error.find_element(By.XPATH, "preceding-sibling::textarea")
    assert field.get_attribute("value") == "{yes please"
    assert store.list("approval", "order-3") == before

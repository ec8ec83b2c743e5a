"""Take docs/inbox.png and docs/run.png: the web inbox and a run page, in headless chromium.

Run from the repository root, with the test extra and Debian's chromium::

    .venv/bin/python docs/screenshots.py

It serves ``examples/expense.py`` from a memory store on a free loopback
port, starts two runs (one waiting for approval, one answered and done),
and saves the two pages beside this script.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import uvicorn
from selenium import webdriver

from pausegraph import MemoryCheckpointer, Resume, Runner
from pausegraph.web import app

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))

import expense  # noqa: E402  (the example, from examples/)


def main() -> None:
    store = MemoryCheckpointer()
    runner = Runner(expense.graph, store)
    runner.run("exp-1042", {"employee": "ada", "amount": 420})
    runner.run("exp-1043", {"employee": "<b>grace</b>", "amount": 980})
    runner.run("exp-1041", {"employee": "alan", "amount": 250})
    runner.resume("exp-1041", Resume({"approved": True, "by": "grace"}))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app([expense.graph], store), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1000,1100")
    browser = webdriver.Chrome(
        service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options
    )
    try:
        browser.get(url + "/")
        browser.save_screenshot(str(HERE / "inbox.png"))
        browser.get(url + "/runs/expense/exp-1041")
        browser.save_screenshot(str(HERE / "run.png"))
    finally:
        browser.quit()
        server.should_exit = True
        thread.join(10)
    print(f"saved {HERE / 'inbox.png'} and {HERE / 'run.png'}")


if __name__ == "__main__":
    main()

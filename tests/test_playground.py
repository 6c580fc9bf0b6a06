"""The web playground at `/`, in a real browser: Debian's headless Chromium driven by Selenium, against
`bombus serve` running in a subprocess on a free loopback port.

The main server runs the embedded defaults (the real SmolLM2 chat model and all-MiniLM-L6-v2, so the chat
streams real text and the search ranks by meaning) plus tiny random fill-mask and classification models,
behind an API key. A second one serves only a tiny embedder: the tabs it cannot serve must say so.
The page must show exactly what the HTTP API answers for the same request.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import pytest

from server_fixtures import Server, build_models

API_KEY = "playground-secret"
WAIT_S = 60  # generous: the machine is shared


# ---- the servers and the browser ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("playground-models"))


@pytest.fixture(scope="module")
def servers(models):
    """The main server and the embed-only one, started side by side (each spends seconds loading)."""
    from bombus.serving.http import default_models

    served = [*default_models(), str(models["tiny-mlm"]), str(models["tiny-nli"])]
    small_cache = ["--max-batch-size", "4", "--max-length", "1024"]
    commands = [[arg for model in served for arg in ("--model", model)] + ["--api-key", API_KEY, *small_cache],
                ["--model", str(models["tiny-embed"])]]
    with ThreadPoolExecutor(len(commands)) as pool:
        starts = [pool.submit(Server, command) for command in commands]
    running = [start.result() for start in starts if start.exception() is None]
    failures = [start.exception() for start in starts if start.exception() is not None]
    if failures:
        for process in running:
            process.stop()
        raise failures[0]
    yield running
    for process in running:
        process.stop()


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


@pytest.fixture(scope="module")
def embed_only_server(servers):
    return servers[1]


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -c constraints.txt -e '.[test]'")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("Debian's chromium and chromium-driver are missing: `bash scripts/setup.sh` installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(options=options, service=Service(driver))
    yield session
    session.quit()


# ---- helpers -------------------------------------------------------------------------------------------

def api(server: Server, path: str, body: dict | None = None, key: str | None = None) -> dict:
    """The server's JSON answer to a GET (no body) or POST."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(server.url + path, data, headers), timeout=WAIT_S) as r:
        return json.load(r)


def wait(browser, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S, poll_frequency=0.05).until(condition, message)


def element(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, selector)


def elements(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def run_status(browser, panel: str) -> str:
    return element(browser, f"#panel-{panel} .run-status").text


def finished(browser, panel: str) -> bool:
    status = run_status(browser, panel)
    assert not status.startswith("Error"), status
    return status.startswith("Done")


def set_sampling(browser, temperature: float, top_p: float, max_tokens: int) -> None:
    """Range inputs cannot be typed into: set them as a user's drag does (value, then an input event)."""
    browser.execute_script("""
        for (const [id, value] of [["temperature", arguments[0]], ["top-p", arguments[1]]]) {
          const input = document.getElementById(id);
          input.value = value;
          input.dispatchEvent(new Event("input"));
        }""", temperature, top_p)
    max_input = element(browser, "#max-tokens")
    max_input.clear()
    max_input.send_keys(str(max_tokens))
    element(browser, "#seed").clear()


def record_text(browser, selector: str) -> None:
    """Records every value the text under `selector` takes while it streams in (window.__seen)."""
    browser.execute_script("""
        window.__seen = [];
        new MutationObserver(() => {
          const node = document.querySelector(arguments[0]);
          const text = node ? node.textContent : "";
          if (text && text !== window.__seen.at(-1)) window.__seen.push(text);
        }).observe(document.querySelector(arguments[1]), {subtree: true, childList: true, characterData: true});
        """, selector, selector.split()[0])


def assert_no_script_errors(browser, expected: str = "\0") -> None:
    """No error in the page's console since the last look (other than one containing `expected`)."""
    errors = [entry["message"] for entry in browser.get_log("browser")
              if entry["level"] == "SEVERE" and expected not in entry["message"]]
    assert not errors, errors


def pick(browser, picker: str, model_id: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(element(browser, picker)).select_by_value(model_id)


def model_for(server: Server, task: str) -> str:
    return next(m["id"] for m in api(server, "/v1/models", key=API_KEY)["data"] if task in m["tasks"])


def enter_key(browser) -> None:
    if not element(browser, "#key-box").get_attribute("open"):
        element(browser, "#key-box summary").click()
    key = element(browser, "#api-key")
    key.clear()
    key.send_keys(API_KEY + "\n")


def open_page(browser, server: Server, tab: str) -> None:
    """The page on `tab`, its models listed (giving the API key the first time: the tab keeps it)."""
    browser.get(f"{server.url}/#{tab}")
    wait(browser, lambda b: element(b, "#server-status").text not in ("", "Connecting to the server…"),
         "the page did not ask for the models")
    if "401" in element(browser, "#server-status").text:
        enter_key(browser)
        assert_no_script_errors(browser, expected="401")  # the request without the key, and nothing else
    wait(browser, lambda b: element(b, "#server-status").text.startswith("Serving"), "the models were not listed")
    assert element(browser, f"#tab-{tab}").get_attribute("aria-selected") == "true"


# ---- the page as files ---------------------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_page_is_self_contained(embed_only_server):
    base = embed_only_server.url
    with urllib.request.urlopen(base + "/", timeout=WAIT_S) as r:
        assert r.headers["Content-Type"].startswith("text/html")
        policy = r.headers["Content-Security-Policy"]
        page = r.read().decode()
    assert "default-src 'self'" in policy  # the browser itself refuses anything from elsewhere
    parser = _Links()
    parser.feed(page)
    assert {"playground/playground.js", "playground/playground.css"} <= set(parser.urls)
    for url in parser.urls:
        if url.startswith("data:"):
            continue
        assert not re.match(r"^(\w+:)?//", url), f"{url} is not on this server"
        with urllib.request.urlopen(f"{base}/{url}", timeout=WAIT_S) as r:
            text = r.read().decode()
            assert r.status == 200 and text
        assert not re.search(r"""(["'(]\s*(https?:)?//)|@import""", text), f"{url} loads something from elsewhere"


# ---- a server without generation, fill-mask or classification models -----------------------------------

def test_tabs_without_a_model_say_how_to_serve_one(embed_only_server, browser):
    browser.get(embed_only_server.url + "/")
    wait(browser, lambda b: element(b, "#server-status").text.startswith("Serving 1 model"), "no models listed")
    for panel, task in [("chat", "chat"), ("completion", "completions"), ("fill-mask", "fill-mask"),
                        ("classify", "classify")]:
        element(browser, f"#tab-{panel}").click()
        hint = element(browser, f"#panel-{panel} .missing")
        assert hint.is_displayed() and f"No served model offers {task}" in hint.text
        assert "bombus serve --model " in element(browser, f"#panel-{panel} .missing code").text
        assert not element(browser, f"#panel-{panel} form").is_displayed()
    element(browser, "#tab-similar").click()
    assert not element(browser, "#panel-similar .missing").is_displayed()
    assert element(browser, "#similar-model").get_attribute("value") == "tiny-embed"
    assert not element(browser, "#settings").is_displayed()  # sampling settings belong to generation tabs
    assert_no_script_errors(browser)


def test_controls_are_labelled_and_tabs_follow_the_keyboard(embed_only_server, browser):
    from selenium.webdriver.common.keys import Keys

    browser.get(embed_only_server.url + "/")
    unlabelled = browser.execute_script("""
        return [...document.querySelectorAll("input, select, textarea")]
          .filter((c) => !c.labels.length && !c.getAttribute("aria-label")).map((c) => c.id);""")
    assert unlabelled == []
    tab = element(browser, "#tab-chat")
    tab.click()
    tab.send_keys(Keys.ARROW_LEFT)  # wraps around to the last tab
    assert browser.switch_to.active_element.get_attribute("id") == "tab-similar"
    assert element(browser, "#panel-similar").is_displayed() and not element(browser, "#panel-chat").is_displayed()
    browser.switch_to.active_element.send_keys(Keys.HOME)
    assert element(browser, "#tab-chat").get_attribute("aria-selected") == "true"
    assert [t.get_attribute("tabindex") for t in elements(browser, "[role=tab]")] == ["0", "-1", "-1", "-1", "-1"]
    assert_no_script_errors(browser)


# ---- the defaults (real models) and tiny encoders, behind an API key -----------------------------------

def test_api_key_is_asked_for_then_used(server, browser):
    browser.get(server.url + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    wait(browser, lambda b: "401" in element(b, "#server-status").text, "a missing key was not reported")
    assert "API key" in element(browser, "#server-status").text
    enter_key(browser)
    wait(browser, lambda b: element(b, "#server-status").text.startswith("Serving 4 models"), "the key was not used")
    assert element(browser, "#chat-model").get_attribute("value") == "SmolLM2-135M-Instruct"
    assert_no_script_errors(browser, expected="401")  # the page's first request, without the key


def chat_turn(browser, text: str, max_tokens: int) -> str:
    """Sends `text` in the chat, greedy; the reply shown once done (every state it took: window.__seen)."""
    set_sampling(browser, temperature=0, top_p=1, max_tokens=max_tokens)
    record_text(browser, "#chat-log li.assistant:last-child .content")
    element(browser, "#chat-input").send_keys(text)
    element(browser, "#chat-send").click()
    wait(browser, lambda b: finished(b, "chat"), "the chat reply did not finish")
    return element(browser, "#chat-log li.assistant:last-child .content").get_attribute("textContent")


def test_chat_streams_the_default_model(server, browser):
    open_page(browser, server, "chat")
    model = element(browser, "#chat-model").get_attribute("value")
    first = chat_turn(browser, "What is the capital of France?", max_tokens=12)
    seen = browser.execute_script("return window.__seen")
    assert first.strip(), "no text arrived"
    assert len(seen) >= 3, f"the reply did not stream in: {seen}"
    assert all(first.startswith(part) for part in seen), seen  # each piece extends the text so far
    history = [{"role": "user", "content": "What is the capital of France?"}]
    alone = api(server, "/v1/chat/completions", {"model": model, "messages": history, "temperature": 0, "top_p": 1,
                                                 "max_tokens": 12}, key=API_KEY)
    assert first == alone["choices"][0]["message"]["content"]  # greedy: what the API answers
    assert element(browser, "#chat-input").get_attribute("value") == ""

    second = chat_turn(browser, "And of Italy?", max_tokens=6)  # the page sends the whole conversation
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "And of Italy?"}]
    alone = api(server, "/v1/chat/completions", {"model": model, "messages": history, "temperature": 0, "top_p": 1,
                                                 "max_tokens": 6}, key=API_KEY)
    assert second == alone["choices"][0]["message"]["content"]
    assert [e.text for e in elements(browser, "#chat-log li .role")] == ["You", "Model", "You", "Model"]
    assert_no_script_errors(browser)


def test_stop_ends_the_stream_and_keeps_the_text(server, browser):
    open_page(browser, server, "chat")
    element(browser, "#chat-clear").click()
    set_sampling(browser, temperature=0, top_p=1, max_tokens=400)
    element(browser, "#chat-input").send_keys("Tell me a long story about a bee.")
    element(browser, "#chat-send").click()
    reply = "#chat-log li.assistant:last-child .content"
    wait(browser, lambda b: element(b, reply).get_attribute("textContent"), "no text arrived")
    assert not element(browser, "#chat-send").is_enabled()  # one request at a time
    assert not element(browser, "#chat-clear").is_enabled()  # the conversation stays whole while it streams
    element(browser, "#panel-chat .stop").click()
    wait(browser, lambda b: run_status(b, "chat") == "Stopped.", "Stop did not end the stream")
    kept = element(browser, reply).get_attribute("textContent")
    time.sleep(0.5)
    assert element(browser, reply).get_attribute("textContent") == kept and kept  # nothing more arrives
    assert element(browser, "#chat-send").is_enabled() and not element(browser, "#panel-chat .stop").is_enabled()
    assert element(browser, "#chat-clear").is_enabled()
    assert_no_script_errors(browser)


def test_completion_shows_the_generated_text(server, browser):
    open_page(browser, server, "completion")
    assert element(browser, "#settings").is_displayed()
    model = element(browser, "#completion-model").get_attribute("value")
    set_sampling(browser, temperature=0, top_p=1, max_tokens=8)
    element(browser, "#completion-prompt").send_keys("The three primary colours are")
    element(browser, "#completion-send").click()
    wait(browser, lambda b: finished(b, "completion"), "the completion did not finish")
    generated = element(browser, "#completion-output strong").get_attribute("textContent")
    alone = api(server, "/v1/completions", {"model": model, "prompt": "The three primary colours are",
                                            "temperature": 0, "top_p": 1, "max_tokens": 8}, key=API_KEY)
    assert generated == alone["choices"][0]["text"] and generated
    assert element(browser, "#completion-output .prompt").text == "The three primary colours are"
    assert_no_script_errors(browser)


def test_search_ranks_pasted_text_by_meaning(server, browser):
    open_page(browser, server, "similar")
    assert element(browser, "#similar-model").get_attribute("value") == "all-MiniLM-L6-v2"
    corpus = element(browser, "#similar-corpus")
    corpus.clear()
    corpus.send_keys("The cat sleeps on the sofa.\nShares fell on Wall Street.\nIt will snow tomorrow.")
    query = element(browser, "#similar-query")
    query.clear()
    query.send_keys("stock market news")
    element(browser, "#similar-send").click()
    wait(browser, lambda b: len(elements(b, "#similar-output li")) == 3, "no matches shown")
    assert [row.text for row in elements(browser, "#similar-output li strong")][0] == "Shares fell on Wall Street."
    assert_no_script_errors(browser)


def test_fill_mask_and_classification_show_the_api_results(server, browser):
    open_page(browser, server, "fill-mask")
    mlm = model_for(server, "fill-mask")
    assert element(browser, "#fill-mask-model").get_attribute("value") == mlm
    text_box = element(browser, "#fill-mask-input")
    text = text_box.get_attribute("value")
    text_box.clear()
    text_box.send_keys("No mask token here.")  # the server's 400 and its message show in the page
    element(browser, "#fill-mask-send").click()
    wait(browser, lambda b: run_status(b, "fill-mask"), "the error was not shown")
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(server, "/v1/fill-mask", {"model": mlm, "inputs": "No mask token here."}, key=API_KEY)
    message = json.load(refused.value)["error"]["message"]
    assert run_status(browser, "fill-mask") == f"Error: 400 {message}"
    assert "error" in element(browser, "#panel-fill-mask .run-status").get_attribute("class")
    assert not elements(browser, "#fill-mask-output li")
    assert_no_script_errors(browser, expected="status of 400")  # the refused request, and nothing else
    text_box.clear()
    text_box.send_keys(text)
    element(browser, "#fill-mask-send").click()
    wait(browser, lambda b: elements(b, "#fill-mask-output li"), "no predictions shown")
    expected = api(server, "/v1/fill-mask", {"model": mlm, "inputs": text}, key=API_KEY)["outputs"]
    shown = [(row.find_element("css selector", "strong").text, row.find_element("css selector", ".value").text)
             for row in elements(browser, "#fill-mask-output li")]
    assert shown == [(p["token"].strip() or p["token"], f"{p['score']:.3f}") for p in expected["predictions"]]

    element(browser, "#tab-classify").click()
    classifier = model_for(server, "classify")
    assert element(browser, "#classify-model").get_attribute("value") == classifier
    texts = [line for line in element(browser, "#classify-input").get_attribute("value").split("\n") if line.strip()]
    element(browser, "#classify-send").click()
    wait(browser, lambda b: len(elements(b, "#classify-output .result")) == len(texts), "no labels shown")
    expected = api(server, "/v1/classify", {"model": classifier, "inputs": texts}, key=API_KEY)["outputs"]
    for block, text, result in zip(elements(browser, "#classify-output .result"), texts, expected):
        assert block.find_element("css selector", "h3").text == text
        labels = [strong.text for strong in block.find_elements("css selector", "li strong")]
        assert labels == [p["label"] for p in result["predictions"]]
        assert set(labels) == {"contradiction", "neutral", "entailment"}
    assert_no_script_errors(browser)

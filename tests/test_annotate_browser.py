"""`hspnet annotate` in Debian's headless Chromium against the real server: keys and clicks,
undo, a SIGKILL of the server half-way, two tabs, and label names that look like HTML."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from annotate_helpers import Server, log_events, shown_image, start_browser, wait_for, wait_new_image, wait_saved
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

TOKEN = "browser-test-token-0123456789"


@pytest.fixture(scope="module")
def world(demo_split, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """30 world images (hard links) and their true labels."""
    root = tmp_path_factory.mktemp("annotate-world")
    images = root / "images"
    images.mkdir()
    with open(demo_split["world"] / "annotations.csv", newline="") as fh:
        truth = {row["image"]: row["labels"].split(";") for row in csv.DictReader(fh)}
    names = sorted(truth)[:30]
    for name in names:
        os.link(demo_split["images"] / name, images / name)
    return {"images": images, "names": names, "truth": {n: truth[n] for n in names}, "taxonomy": demo_split["taxonomy"]}


@pytest.fixture
def browser(tmp_path: Path):
    driver = start_browser(tmp_path)
    yield driver
    driver.quit()


def _press(browser, keys: str) -> None:  # type: ignore[no-untyped-def]
    browser.find_element(By.TAG_NAME, "body").send_keys(keys)


def _answer(browser, image: str, label: str, way: str) -> None:  # type: ignore[no-untyped-def]
    """Answer ``label`` for the image on screen by a click on its chip, the search box, or its number key."""
    assert shown_image(browser) == image
    if way == "click":
        browser.find_element(By.CSS_SELECTOR, f".chip[data-label='{label}']").click()
    elif way == "search":
        _press(browser, "/")
        search = browser.find_element(By.ID, "search")
        search.send_keys(label[:4])
        wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".match"), what="search matches")
        first = browser.find_element(By.CSS_SELECTOR, ".match span").text
        if first != label:  # the prefix matched another label first: type the whole name
            search.send_keys(label[4:])
            wait_for(
                browser,
                lambda b: b.find_element(By.CSS_SELECTOR, ".match span").text == label,
                what=f"search match {label}",
            )
        search.send_keys("\n")
    else:
        choices = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".choice .name")]
        _press(browser, str(choices.index(label) + 1))


def test_label_20_images_with_keys_and_clicks_undo_and_a_server_kill(world: dict, browser, tmp_path: Path) -> None:
    log = tmp_path / "labels.jsonl"
    server = Server(world["images"], world["taxonomy"], log, token=TOKEN)
    try:
        expected: list[tuple] = []  # (event, image, label) in log order
        browser.get(server.url)
        image = wait_new_image(browser, None)
        assert image == world["names"][0]
        ways = ["click", "search", "key"]
        answered = 0
        keys_used = 0
        killed = False
        while answered < 20:
            truth = world["truth"][image]
            if answered == 4:
                _press(browser, "n")
                expected.append(("none", image, None))
            elif answered == 7:
                _press(browser, "s")
                expected.append(("skip", image, None))
            else:
                label = truth[answered % len(truth)]
                way = ways[answered % 3]
                keyed = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".choice .name")]
                if way == "key":  # number keys hold the 9 labels used last (no suggester here)
                    label = next((name for name in truth if name in keyed), label)
                    way = "key" if label in keyed else "click"
                keys_used += way == "key"
                _answer(browser, image, label, way)
                expected.append(("answer", image, label))
            answered += 1
            previous = image
            image = wait_new_image(browser, previous)
            if answered == 10:
                # Undo the last answer: the same image comes back and is answered again.
                wait_saved(browser)
                _press(browser, "u")
                back = wait_new_image(browser, image)
                assert back == previous
                undone_seq = len(expected)
                expected.append(("undo", undone_seq, None))
                label = world["truth"][back][-1]
                _answer(browser, back, label, "click")
                expected.append(("answer", back, label))
                image = wait_new_image(browser, back)
            if answered == 13 and not killed:
                wait_saved(browser)
                server.kill()  # SIGKILL: nothing of the server's shutdown runs
                killed = True
                server = Server(world["images"], world["taxonomy"], log, token=TOKEN)
                browser.get(server.url)
                image = wait_new_image(browser, None)
                # The restart continues with the first image without an answer.
                assert image == world["names"][13]
        assert keys_used >= 3
        wait_saved(browser)
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        status = server.get("/api/status")[1]
    finally:
        stopped = server.stop()
    assert stopped == 0

    events = log_events(log)
    assert [e["seq"] for e in events] == list(range(1, len(expected) + 1))
    got = []
    for event in events:
        if event["event"] == "undo":
            got.append(("undo", event["undoes"], None))
        else:
            got.append((event["event"], event["image"], event.get("label")))
            assert event["annotator"] == "tester" and event["rank"] is None and event["seconds"] > 0
    assert got == expected
    assert [e[1] for e in expected if e[0] != "undo"] == world["names"][:10] + world["names"][9:20]
    assert b'"labelled":19' in status and b'"skipped":1' in status and b'"queue_done":20' in status


def test_two_tabs_get_different_images(world: dict, browser, tmp_path: Path) -> None:
    server = Server(world["images"], world["taxonomy"], tmp_path / "labels.jsonl", token=TOKEN)
    try:
        browser.get(server.url)
        first_tab = browser.current_window_handle
        seen = {first_tab: [wait_new_image(browser, None)]}
        browser.switch_to.new_window("tab")
        browser.get(server.url)
        second_tab = browser.current_window_handle
        seen[second_tab] = [wait_new_image(browser, None)]
        for _ in range(3):
            for tab in (first_tab, second_tab):
                browser.switch_to.window(tab)
                image = seen[tab][-1]
                _press(browser, "s")
                seen[tab].append(wait_new_image(browser, image))
                wait_saved(browser)
        assert not set(seen[first_tab]) & set(seen[second_tab]), seen
        assert len(set(seen[first_tab]) | set(seen[second_tab])) == 8
        assert b'"in_progress":8' in server.get("/api/status")[1]  # 4 held by each tab: current + 3 prefetched
    finally:
        assert server.stop() == 0


def test_label_names_are_text_never_html(world: dict, browser, tmp_path: Path) -> None:
    # No ';' in it: taxonomies refuse the tags separator in label names (tested in test_yaml_safety).
    evil = '<img src=x onerror="window.pwned=1">'
    taxonomy = tmp_path / "evil.yaml"
    taxonomy.write_text(
        "name: evil\nlabels:\n- cat\n- '" + evil + "'\n- '<b>bold</b>'\n"
        "groups:\n  '<script>window.pwned=2</script>': [cat, '" + evil + "']\n  plain: ['<b>bold</b>']\n"
    )
    log = tmp_path / "labels.jsonl"
    server = Server(world["images"], taxonomy, log, token=TOKEN)
    try:
        browser.get(server.url)
        image = wait_new_image(browser, None)
        chips = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".chip")]
        assert evil in chips and "<b>bold</b>" in chips
        headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, ".group-box h3")]
        assert "<script>window.pwned=2</script>".upper() in headings  # shown (upper-cased by CSS), not run
        _press(browser, "/")
        browser.find_element(By.ID, "search").send_keys("<im")
        wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".match"), what="search match")
        assert browser.find_element(By.CSS_SELECTOR, ".match span").text == evil
        browser.find_element(By.ID, "search").send_keys("\n")
        wait_new_image(browser, image)
        wait_saved(browser)
        assert browser.execute_script("return window.pwned") is None
        assert browser.execute_script("return document.querySelectorAll('img').length") == 1  # the picture only
        assert browser.execute_script("return document.querySelectorAll('script:not([src])').length") == 0
        assert not browser.execute_script(
            "return [...document.querySelectorAll('b')].some(n => n.textContent === 'bold')"
        )
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - raises when no alert is open
        assert log_events(log)[0]["label"] == evil
    finally:
        assert server.stop() == 0

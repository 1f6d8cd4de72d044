"""The studio page at ``/``, driven in headless Chromium (Playwright) against a live server.

One server (all-MiniLM-L6-v2, so topics and search results mean something; a knowledge base; the
tiny random reranker) serves every test of this module;
each test is a user's flow through one tab, as a user takes it: typing, clicking, uploading a file,
keyboard only, at phone width. A screenshot of each tab is saved under ``$QEMBED_ARTIFACTS`` (or a
pytest temporary folder); docs/images/studio-*.png are copies of them.

Chromium is the Debian package (``make chromium``), launched by its path: Playwright's own browser
download cannot run here, and nothing is downloaded at test time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from qembed.server.testing import ServerURL, running_server

playwright_sync = pytest.importorskip("playwright.sync_api", reason="the test extra's playwright is not installed")
expect = playwright_sync.expect


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (make chromium installs "
                                                          "Debian's); the studio's browser tests need one")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
KEY = "studio-key"
#: How long a step may wait (2 shared cores: generous; no test asserts a duration).
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)

#: 50 short texts: four English topics and a few payment/delivery messages in four languages.
GROUPS = {
    "cooking": [
        *[f"Bake the bread in a hot oven for {m} minutes" for m in (20, 30, 40)],
        "Whisk the eggs with sugar before adding the flour", "This soup recipe needs garlic, onions and fresh basil",
        "Simmer the tomato sauce slowly and stir the pasta", "Roast the chicken with rosemary and lemon in the oven",
        "Knead the dough until it is smooth, then let the bread rise", "Fry the onions in butter before adding the rice",
        "A pinch of salt makes the chocolate cake recipe taste richer", "Slice the carrots and steam them for the soup",
        "Marinate the fish in lime juice overnight"],
    "football": [
        "The striker scored a goal in the final minute of the match",
        "The football team won the league after a penalty shootout",
        "The goalkeeper saved two penalties in the cup final", "Fans cheered as the team scored a second goal",
        "The coach changed the football team's formation at half time", "The referee showed a red card to the defender",
        "The midfielder passed the ball and the striker scored", "Our club signed a new goalkeeper before the season",
        "The match ended in a draw after extra time", "The captain lifted the trophy in front of the fans"],
    "astronomy": [
        "The telescope captured a distant galaxy full of stars", "Astronomers discovered a new planet orbiting a nearby star",
        "The moon passes between the earth and the sun during an eclipse", "A comet with a bright tail crossed the night sky",
        "Black holes bend the light of stars around them", "The space telescope measured the planet's atmosphere",
        "Mars is a red planet with the tallest volcano in the solar system",
        "Astronomers watched the star explode into a supernova",
        "Saturn's rings are made of ice and rock", "The astronaut floated outside the space station"],
    "programming": [
        "The Python function raised an exception because of a missing variable",
        "Compile the code and fix the syntax errors",
        "Write unit tests for every function in the software library",
        "The database query in the program returns the wrong rows",
        "Refactor the code to remove the duplicated Python functions", "A memory leak in the program crashed the server",
        "Use a debugger to step through the code line by line", "The compiler reported a type error in the source code",
        "Merge the branch after the code review passes", "The web server returns an error for every request"],
    "multilingual": [
        "Mon paiement a encore échoué", "Die Zahlung ist wieder fehlgeschlagen", "¿Dónde está mi paquete?",
        "Mein Paket ist noch nicht angekommen", "Le colis est arrivé en retard", "My payment failed again",
        "Mi pago falló otra vez", "Where is my package?"],
}
FIFTY = [t for texts in GROUPS.values() for t in texts]
GOLD = [name for name, texts in GROUPS.items() for _ in texts]
assert len(FIFTY) == 50


def _has_topic_models() -> bool:
    from qembed.config import Settings

    return "topic_model" in Settings.model_fields


#: Saved topic models (qembed serve --topic-model) and /v1/summarize: the studio offers them where they exist.
HAS_TOPIC_MODELS = _has_topic_models()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, with the Debian Chromium and no network side-trips."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": LAUNCH_ARGS, "headless": True}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1100, "height": 820}, "accept_downloads": True,
            "service_workers": "block"}


@pytest.fixture(scope="module")
def studio(minilm_encoder, tmp_path_factory) -> Iterator[ServerURL]:
    """A live server for every studio test: MiniLM, a knowledge base and a tiny reranker."""
    from qembed.rerank.testing import build_random_reranker

    where = tmp_path_factory.mktemp("studio")
    reranker = build_random_reranker(where / "tiny-reranker", seed=1, head_scale=8.0)
    extra = {"topic_model": str(where / "topics")} if HAS_TOPIC_MODELS else {}
    with running_server(encoder=minilm_encoder, index=str(where / "kb"), reranker=str(reranker), engine="thread",
                        compile=False, served_model_name="all-MiniLM-L6-v2", **extra) as url:
        yield url


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Where the screenshots go: ``$QEMBED_ARTIFACTS/studio`` or a pytest temporary folder."""
    root = os.environ.get("QEMBED_ARTIFACTS")
    path = Path(root) / "studio" if root else tmp_path_factory.mktemp("studio-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page_errors(page) -> Iterator[list[str]]:
    """Script errors and console errors of the page (CSP violations included); none are allowed."""
    errors: list[str] = []
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    yield errors


def _expected_console(errors: list[str], *allowed: str) -> list[str]:
    """Console errors other than the failed requests a test makes on purpose."""
    return [e for e in errors if not any(a in e for a in allowed)]


def _open(page, url: str, tab: str) -> None:
    page.goto(f"{url}/#{tab}")
    page.wait_for_selector(f"#tab-{tab}[aria-selected=true]")
    expect(page.locator("#server-status")).to_contain_text("ready")


def _panel(page):
    """The tab panel on show (labels repeat across panels: "Texts, one a line")."""
    return page.locator("[role=tabpanel]:not([hidden])")


def _shot(page, artifacts: Path, name: str, full_page: bool = False) -> None:
    page.screenshot(path=str(artifacts / f"studio-{name}.png"), full_page=full_page)


# ------------------------------------------------------------------------------------ Compare
def test_compare_two_texts_and_a_matrix(studio, page, page_errors, artifacts, tmp_path) -> None:
    from qembed.pairs.scoring import save_threshold

    _open(page, studio, "compare")
    _panel(page).get_by_label("First text").fill("How do I reset my password?")
    _panel(page).get_by_label("Second text").fill("I forgot my password, how can I change it?")
    # the threshold `qembed pairs --calibrate --save-threshold` wrote
    calibrated = save_threshold(tmp_path / "threshold.json", model="all-MiniLM-L6-v2", threshold=0.5,
                                instruction=None)
    _panel(page).get_by_label("Load a threshold file").set_input_files(str(calibrated))
    expect(page.locator("#compare-threshold-note")).to_contain_text("Threshold 0.5000 from threshold.json")
    assert _panel(page).get_by_label("Same at or above").input_value() == "0.5"
    _panel(page).get_by_role("button", name="Compare", exact=True).click()
    score = page.locator("#compare-score")
    score.wait_for()
    value = float(score.text_content())
    assert -1.0 <= value <= 1.0
    verdict = page.locator("#compare-results .verdict")
    assert verdict.text_content() == ("same" if value >= 0.5 else "different")
    assert "cosine ≥ 0.5000" in page.locator("#compare-results").text_content()
    _shot(page, artifacts, "compare")

    _panel(page).get_by_label("A matrix (up to 20 texts)").check()
    _panel(page).get_by_label("Texts, one a line (2 to 20)").fill("red apple\ngreen apple\nblue sky")
    _panel(page).get_by_role("button", name="Compare", exact=True).click()
    matrix = page.locator("#compare-results table.matrix")
    matrix.wait_for()
    assert matrix.locator("tbody tr").count() == 3
    assert matrix.locator("tbody tr").first.locator("td").first.text_content() == "1.000"
    assert not page_errors


# ------------------------------------------------------------------------------------ Search
def test_search_add_three_documents_and_find_one(studio, page, page_errors, artifacts) -> None:
    _open(page, studio, "search")
    docs = [("faq-ship", "Orders ship within two days from our warehouse", "shipping"),
            ("faq-refund", "Refunds reach your card within five working days", "billing"),
            ("faq-login", "Reset your password from the sign-in page", "account")]
    for doc_id, text, topic in docs:
        _panel(page).get_by_label("Id (empty: a hash of the text)").fill(doc_id)
        _panel(page).get_by_label("Text", exact=True).fill(text)
        _panel(page).get_by_label("Metadata, one a line").fill(f"topic = {topic}")
        _panel(page).get_by_role("button", name="Add document", exact=True).click()
        expect(page.locator("#doc-results")).to_contain_text(f"{doc_id}")
    assert "holds 3 chunks" in page.locator("#doc-results").text_content()

    _panel(page).get_by_label("Query").fill("refunds to my card")
    _panel(page).get_by_label("Mode").select_option("dense")
    _panel(page).get_by_label("Top k").fill("3")
    _panel(page).get_by_role("button", name="Search", exact=True).click()
    first = page.locator("#search-results .hits > li").first
    first.wait_for()
    assert first.get_attribute("data-doc") == "faq-refund"
    assert "Refunds reach your card" in first.text_content()
    assert re.search(r"\d\.\d{4}", first.locator(".score").text_content())

    # a metadata filter and the reranker
    _panel(page).get_by_label("Mode").select_option("hybrid")
    _panel(page).get_by_label("Rerank").check()
    _panel(page).get_by_label("Metadata filters").fill("topic = account | shipping")
    _panel(page).get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#search-results")).to_contain_text("reranked")
    found = {li.get_attribute("data-doc") for li in page.locator("#search-results .hits > li").all()}
    assert found == {"faq-login", "faq-ship"}
    _shot(page, artifacts, "search")

    # delete one from its result
    page.locator("#search-results li[data-doc=faq-ship] button").click()
    expect(page.locator("#doc-results")).to_contain_text("Deleted the document faq-ship")
    assert page.locator("#search-results li[data-doc=faq-ship]").count() == 0
    assert not page_errors


# ------------------------------------------------------------------------------------ Explore
def test_explore_clusters_fifty_texts_from_a_file(studio, page, page_errors, artifacts, tmp_path) -> None:
    data = tmp_path / "feedback.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(FIFTY)),
                    encoding="utf-8")
    _open(page, studio, "explore")
    page.locator("#explore-file").set_input_files(str(data))
    expect(page.locator("#explore-status")).to_contain_text("Read 50 texts")
    assert _panel(page).get_by_label("Texts, one a line").input_value().split("\n") == FIFTY
    _panel(page).get_by_label("Topics (empty: auto)").fill("5")
    _panel(page).get_by_role("button", name="Find topics").click()
    expect(page.locator("#explore-results")).to_contain_text("Found 5 topics")

    topics = page.locator("#explore-topics button")
    assert topics.count() == 5
    sizes = [int(re.search(r"(\d+) texts?", b.text_content()).group(1)) for b in topics.all()]
    assert sum(sizes) == 50
    assert all(b.locator(".kw").text_content().strip() for b in topics.all())  # keywords for every topic
    circles = page.locator("#explore-map circle")
    assert circles.count() == 50

    circles.last.hover()  # drawn last: on top of any point it overlaps
    tip = page.locator("#explore-tip")
    tip.wait_for(state="visible")
    assert any(t in tip.text_content() for t in FIFTY)

    topics.nth(1).click()
    assert topics.nth(1).get_attribute("aria-pressed") == "true"
    assert page.locator("#explore-members li").count() == sizes[1]
    central = [li.text_content() for li in page.locator("#explore-central li").all()]  # representative texts
    members = [li.text_content() for li in page.locator("#explore-members li").all()]
    assert central and set(central) <= set(members)
    assert page.locator("#explore-map circle:not(.dim)").count() == sizes[1]
    _shot(page, artifacts, "explore")

    with page.expect_download() as download:
        _panel(page).get_by_role("button", name="Export CSV").click()
    rows = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert rows[0] == "index,text,cluster,label,distance" and len(rows) == 51
    with page.expect_download() as download:
        _panel(page).get_by_role("button", name="Export JSONL").click()
    records = [json.loads(line) for line in Path(download.value.path()).read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == FIFTY
    # the four English topics of the fixture come back, each mostly in a topic of its own
    majority = []
    for name in ("cooking", "football", "astronomy", "programming"):
        clusters = [r["cluster"] for r, gold in zip(records, GOLD) if gold == name]
        best = max(set(clusters), key=clusters.count)
        assert clusters.count(best) >= 0.8 * len(clusters), (name, clusters)
        majority.append(best)
    assert len(set(majority)) == 4
    assert not page_errors


@pytest.mark.skipif(not HAS_TOPIC_MODELS, reason="this qembed has no saved topic models (qembed serve --topic-model)")
def test_explore_saved_topic_model_and_topic_summaries(studio, page, page_errors, artifacts) -> None:
    _open(page, studio, "explore")
    assert page.locator("#saved-topics").is_visible()
    panel = _panel(page)
    panel.get_by_label("Texts, one a line").fill("\n".join(FIFTY))
    panel.get_by_label("Topics (empty: auto)").fill("5")
    panel.get_by_role("button", name="Save these texts as the topic model").click()
    expect(page.locator("#saved-results")).to_contain_text("now has 5 topics")
    assert page.locator("#saved-results tbody tr").count() == 5
    # saving again without the Replace box: the API's message and what to do on this page
    panel.get_by_role("button", name="Save these texts as the topic model").click()
    alert = page.locator("#saved-error")
    alert.wait_for(state="visible")
    assert "pass replace: true to replace it" in alert.text_content()
    assert "tick “Replace the saved one”" in alert.text_content()
    expect(page.locator("#saved-replace")).to_be_focused()
    page.locator("#saved-replace").check()
    save = panel.get_by_role("button", name="Save these texts as the topic model")
    save.click()
    expect(save).to_be_enabled()  # the replacing save has answered
    expect(page.locator("#saved-results")).to_contain_text("now has 5 topics")
    assert page.locator("#saved-error").is_hidden()

    new = ["Grill the steak and season it with pepper", "The striker missed a penalty", "Where is my package?"]
    panel.get_by_label("Texts, one a line").fill("\n".join(new))
    panel.get_by_role("button", name="Assign these texts to it").click()
    expect(page.locator("#saved-results")).to_contain_text("3 texts placed in the saved topics")
    rows = page.locator("#saved-results tbody tr")
    assert [r.locator("td").first.text_content() for r in rows.all()] == new
    page.locator("#saved-topics").scroll_into_view_if_needed()
    _shot(page, artifacts, "topics")
    panel.get_by_role("button", name="Show its topics").click()
    expect(page.locator("#saved-results")).to_contain_text("The saved topic model: 5 topics")

    # clustering answers each topic's summary beside its representative texts
    panel.get_by_label("Texts, one a line").fill("\n".join(FIFTY))
    panel.get_by_role("button", name="Find topics").click()
    expect(page.locator("#explore-results")).to_contain_text("Found 5 topics")
    page.locator("#explore-topics button").first.click()
    summary = page.locator("#explore-summary li")
    expect(summary.first).to_be_visible()
    assert {li.text_content() for li in summary.all()} <= set(FIFTY)
    assert not _expected_console(page_errors, "400 (Bad Request)")  # the refused save


def test_explore_job_can_be_cancelled(studio, page, page_errors) -> None:
    _open(page, studio, "explore")
    _panel(page).get_by_label("Texts, one a line").fill("\n".join(FIFTY))
    # hold the request in the browser so the job is still running when Cancel is pressed
    page.route("**/v1/cluster", lambda route: None)
    _panel(page).get_by_role("button", name="Find topics").click()
    assert page.locator("#explore-progress").is_visible()
    _panel(page).get_by_role("button", name="Cancel").click()
    expect(page.locator("#explore-status")).to_have_text(re.compile(r"^Cancelled"))
    assert _panel(page).get_by_role("button", name="Find topics").is_enabled()
    assert page.locator("#explore-progress").is_hidden()
    assert _panel(page).get_by_label("Texts, one a line").input_value() == "\n".join(FIFTY)
    assert not page_errors


# ------------------------------------------------------------------------------------ errors
def test_api_errors_appear_as_the_apis_message_and_keep_the_input(studio, page, page_errors) -> None:
    _open(page, studio, "compare")
    _panel(page).get_by_label("First text").fill("a first text")
    _panel(page).get_by_label("Second text").fill("a second text")
    _panel(page).get_by_role("button", name="Compare", exact=True).click()
    expect(page.locator("#compare-score")).to_be_visible()
    _panel(page).get_by_label("First text").fill("only one side")
    _panel(page).get_by_label("Second text").fill("")
    _panel(page).get_by_role("button", name="Compare", exact=True).click()
    alert = page.locator("#compare-error")
    alert.wait_for(state="visible")
    assert alert.text_content() == "Error 400: pairs[0][1] is empty"
    assert page.locator("#compare-results").text_content() == ""  # the earlier score is gone
    assert _panel(page).get_by_label("First text").input_value() == "only one side"

    page.get_by_role("tab", name="Explore").click()
    _panel(page).get_by_label("Texts, one a line").fill("one\ntwo\nthree")
    _panel(page).get_by_label("Topics (empty: auto)").fill("7")
    _panel(page).get_by_role("button", name="Find topics").click()
    alert = page.locator("#explore-error")
    alert.wait_for(state="visible")
    assert alert.text_content().startswith("Error 400: ") and "clusters" in alert.text_content()
    assert _panel(page).get_by_label("Texts, one a line").input_value() == "one\ntwo\nthree"
    assert not _expected_console(page_errors, "400 (Bad Request)")


# ------------------------------------------------------------------------------------ Dedup, Classify, Rerank
def test_dedup_classify_and_rerank(studio, page, page_errors, artifacts) -> None:
    _open(page, studio, "dedup")
    _panel(page).get_by_label("Texts, one a line").fill("Where is my parcel?\nWhere is my parcel?\nThe sky is blue today")
    _panel(page).get_by_role("button", name="Find duplicates").click()
    expect(page.locator("#dedup-results")).to_contain_text("keeps 2")
    assert "1 group of near-duplicates" in page.locator("#dedup-results").text_content()
    _shot(page, artifacts, "dedup")

    page.get_by_role("tab", name="Classify").click()
    _panel(page).get_by_label("Labels, one a line").fill("billing: invoices and refunds\nshipping: parcels and delivery")
    page.locator("#classify-texts").fill("I was charged twice\nMy parcel is late")
    _panel(page).get_by_role("button", name="Label", exact=True).click()
    rows = page.locator("#classify-table tbody tr")
    rows.first.wait_for()
    assert rows.count() == 2
    assert rows.first.locator("td").nth(1).text_content() in {"billing", "shipping"}
    _shot(page, artifacts, "classify")

    page.get_by_role("tab", name="Rerank").click()
    _panel(page).get_by_label("Query", exact=True).fill("how do I get a refund?")
    _panel(page).get_by_label("Passages, one a line").fill("Refunds take five days\nOur shop opens at nine\nParcels ship daily")
    _panel(page).get_by_role("button", name="Rerank", exact=True).click()
    hits = page.locator("#rerank-results .hits > li")
    hits.first.wait_for()
    assert hits.count() == 3
    scores = [float(h.locator(".score").text_content()) for h in hits.all()]
    assert scores == sorted(scores, reverse=True)
    _shot(page, artifacts, "rerank")
    assert not page_errors


# ------------------------------------------------------------------------------------ Server
def test_server_tab_shows_the_model_and_live_metrics(studio, page, page_errors, artifacts) -> None:
    import httpx

    httpx.post(f"{studio}/v1/embeddings", json={"input": ["warm-up"]}, timeout=60).raise_for_status()
    _open(page, studio, "server")
    card = page.locator("#server-models .card").first
    card.wait_for()
    assert card.locator("h3").text_content() == "all-MiniLM-L6-v2"
    text = card.text_content()
    assert "dimension384" in text.replace(" ", "") and "cpu" in text and "float32" in text
    assert page.locator("#server-models .card").count() == 2  # the reranker's card
    expect(page.locator("#server-stats")).to_contain_text("inputs/s")
    stats = page.locator("#server-stats").text_content()
    assert "queue depth" in stats and "ready" in stats
    assert page.locator("#server-latency code", has_text="/v1/embeddings").count() == 1
    assert page.locator("#server-models dd[title]").first.text_content().startswith("…/")  # no long paths
    _shot(page, artifacts, "server", full_page=True)
    assert not page_errors


# ------------------------------------------------------------------------------------ keyboard, phone
def test_keyboard_only_classify(studio, page, page_errors) -> None:
    _open(page, studio, "compare")
    page.locator("body").focus()
    active = lambda: page.evaluate("document.activeElement.id || document.activeElement.tagName")  # noqa: E731
    for _ in range(6):  # the skip link, then the selected tab
        page.keyboard.press("Tab")
        if active() == "tab-compare":
            break
    assert active() == "tab-compare"
    for _ in range(4):  # Compare → Search → Explore → Dedup → Classify
        page.keyboard.press("ArrowRight")
    assert active() == "tab-classify"
    assert page.locator("#panel-classify").is_visible()
    page.keyboard.press("Tab")
    assert active() == "classify-labels"
    page.keyboard.type("weather\nfood")
    page.keyboard.press("Tab")
    assert active() == "classify-texts"
    page.keyboard.type("It is raining again")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Label"
    page.keyboard.press("Enter")
    page.locator("#classify-table tbody tr").first.wait_for()
    assert page.locator("#classify-results").get_attribute("aria-live") == "polite"
    assert page.locator("#classify-table tbody tr").count() == 1
    assert not page_errors


def test_phone_width_has_no_horizontal_scroll(studio, page, page_errors, artifacts) -> None:
    page.set_viewport_size({"width": 375, "height": 760})
    _open(page, studio, "compare")
    for tab in ("compare", "search", "explore", "dedup", "classify", "rerank", "server"):
        page.get_by_role("tab").filter(has_text=re.compile("^" + tab, re.I)).click()
        assert page.locator(f"#panel-{tab}").is_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{tab}: {overflow}px of horizontal scroll at 375 px"
    page.get_by_role("tab", name="Compare").click()
    _shot(page, artifacts, "phone")
    assert not page_errors


# ------------------------------------------------------------------------------------ a bare server with a key
def test_bare_server_with_a_key(minilm_encoder, page, page_errors) -> None:
    """No knowledge base, no reranker: those tabs say so; the page asks for the key and keeps it in the tab."""
    with running_server(encoder=minilm_encoder, api_key=KEY, engine="thread", compile=False) as url:
        _open(page, url, "search")
        assert page.locator("#search-unavailable").is_visible()
        assert "no knowledge base" in page.get_by_role("tab", name=re.compile("Search")).text_content()
        page.get_by_role("tab", name=re.compile("Rerank")).click()
        assert page.locator("#rerank-unavailable").is_visible()
        assert page.locator("#rerank-form").is_hidden()

        page.get_by_role("tab", name="Compare").click()
        _panel(page).get_by_label("First text").fill("a")
        _panel(page).get_by_label("Second text").fill("b")
        _panel(page).get_by_role("button", name="Compare", exact=True).click()
        page.locator("#compare-error").wait_for(state="visible")
        assert page.locator("#compare-error").text_content() == "Error 401: missing API key: send 'Authorization: Bearer <key>'"

        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Use key").click()
        _panel(page).get_by_role("button", name="Compare", exact=True).click()
        page.locator("#compare-score").wait_for()
        assert page.locator("#compare-error").is_hidden()
        assert KEY not in page.url
        assert page.evaluate("sessionStorage.getItem('qembed.studio.key')") == KEY
        assert page.evaluate("localStorage.getItem('qembed.studio.key')") is None
    assert not _expected_console(page_errors, "401 (Unauthorized)")

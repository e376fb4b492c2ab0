"""The circuit page in a real browser (Debian's headless Chromium, as in
tests/test_report_browser.py): it loads offline with no console error, draws every
circuit and its components, and hovering an edge or a faithfulness point writes its
title into the box under the drawing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
if shutil.which("chromedriver") is None or shutil.which("chromium") is None:
    pytest.skip(
        "Chromium is not installed (make install adds it)", allow_module_level=True
    )

import torch  # noqa: E402
from circuit_models import toy  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from captum_semiring import circuits  # noqa: E402
from captum_semiring.report import write_circuit_report  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, x = toy(batch=2, tokens=4, d=8, heads=2, layers=2, vocab=5)
    corrupted = torch.randn_like(x)
    f = lambda e: model(e)[:, -1, 1]  # noqa: E731
    cg = circuits.trace(f, x)
    scores = {"sum": cg.edge_flows("sum"), "eap": circuits.eap(f, x, corrupted)}
    chosen = {"sum": circuits.top_edges(scores["sum"], 6)}
    chosen["eap"] = circuits.greedy(scores["eap"], 6)
    patch = circuits.EdgePatching(f, x, corrupted)
    curves = {
        m: dict(zip([2, 6], patch.curve(circuits.top_edges(s).edges, [2, 6])))
        for m, s in scores.items()
    }
    out = tmp_path_factory.mktemp("circuits") / "circuits.html"
    return write_circuit_report(chosen, cg, out, curves, known=cg.edges[:3])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def _hover_point(browser: Any, x: float, y: float) -> None:
    """Move the pointer to the viewport point (x, y)."""
    action = ActionBuilder(browser)
    action.pointer_action.move_to_location(int(x), int(y))
    action.perform()


def _midpoint(browser: Any, path: Any) -> tuple[float, float]:
    """The viewport position of the point halfway along an SVG path."""
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", path)
    x, y = browser.execute_script(
        "var p = arguments[0], m = p.getPointAtLength(p.getTotalLength() / 2);"
        "var s = p.ownerSVGElement.createSVGPoint(); s.x = m.x; s.y = m.y;"
        "s = s.matrixTransform(p.getScreenCTM()); return [s.x, s.y];",
        path,
    )
    return x, y


def test_the_page_renders_and_hovering_an_edge_shows_its_title(
    page: Path, browser: Any
) -> None:
    browser.get(page.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    drawings = browser.find_elements(By.CSS_SELECTOR, "svg.circuitgraph")
    assert len(drawings) == 2, "one drawing per circuit"
    for svg in drawings:
        assert svg.size["width"] > 200 and svg.size["height"] > 100
        boxes = svg.find_elements(By.CSS_SELECTOR, "g.component rect")
        assert len(boxes) == 8 and all(b.size["width"] > 0 for b in boxes)
        wires = svg.find_elements(By.CSS_SELECTOR, "g.edge:not(.missed) path.wire")
        assert len(wires) == 6
    svg = drawings[0]
    best = svg.find_element(By.CSS_SELECTOR, 'g.edge[data-rank="1"]')
    width = browser.execute_script(
        "return getComputedStyle(arguments[0]).strokeWidth",
        best.find_element(By.CSS_SELECTOR, "path.wire"),
    )
    assert width == "10px", "the best edge is the widest"
    info = svg.find_element(By.XPATH, "../following-sibling::div[1]")
    assert info.text == "hover an edge or a component"
    x, y = _midpoint(browser, best.find_element(By.CSS_SELECTOR, "path.hit"))
    _hover_point(browser, x, y)
    title = best.find_element(By.TAG_NAME, "title").get_attribute("textContent")
    assert title.startswith("#1 of 6: ") and "slot: " in title
    assert info.text == title  # line by line
    assert "score: " in info.text and "in the known circuit: " in info.text


def test_hovering_a_faithfulness_point_shows_its_value(
    page: Path, browser: Any
) -> None:
    browser.get(page.as_uri())
    plot = browser.find_element(By.CSS_SELECTOR, "svg.faithplot")
    dots = plot.find_elements(By.CSS_SELECTOR, "circle")
    assert len(dots) == 4
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    rect = browser.execute_script(
        "var r = arguments[0].getBoundingClientRect(); return [r.x, r.y, r.width];",
        dots[-1],
    )
    _hover_point(browser, rect[0] + rect[2] / 2, rect[1] + rect[2] / 2)
    info = plot.find_element(By.XPATH, "../following-sibling::div[1]")
    assert info.text.startswith("eap: first 6 edges, faithfulness ")

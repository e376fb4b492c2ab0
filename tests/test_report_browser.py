"""The HTML report in a real browser (issue 14): Debian's headless Chromium, driven
by selenium, loads the page offline with no console error, renders the merged path
graph and the branch flow diagram, and shows a node's hops or a band's numbers on
hover. ``make install`` installs Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
if shutil.which("chromedriver") is None or shutil.which("chromium") is None:
    pytest.skip(
        "Chromium is not installed (make install adds it)", allow_module_level=True
    )

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from captum_semiring.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert main(["explain", "--ig-steps", "4", "--out", str(out)]) == 0
    return out / "report.html"


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1280,2000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def _load(browser, report: Path) -> None:
    """Open the page; it must log no console error."""
    browser.get(report.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_the_report_loads_renders_its_graph_and_shows_hops_on_hover(
    report: Path, browser
) -> None:
    _load(browser, report)
    nodes = browser.find_elements(By.CSS_SELECTOR, "svg.pathgraph g.node")
    assert nodes, "no path graph rendered"
    assert all(n.size["width"] > 0 and n.size["height"] > 0 for n in nodes)
    info = browser.find_elements(By.CSS_SELECTOR, ".hop-info")[0]
    before = info.text
    ActionChains(browser).move_to_element(nodes[0]).perform()
    assert info.text != before and "path 1:" in info.text
    assert "weight" in info.text
    images = browser.find_elements(By.CSS_SELECTOR, "img.plot")
    assert images and all(
        browser.execute_script("return arguments[0].naturalWidth", img) > 0
        for img in images
    ), "a plot did not load"


def test_the_branch_flow_diagram_renders_and_shows_a_band_on_hover(
    report: Path, browser
) -> None:
    _load(browser, report)
    diagrams = browser.find_elements(By.CSS_SELECTOR, "svg.branchflow")
    assert len(diagrams) == 5, "one diagram per demo input"
    bands = diagrams[0].find_elements(By.CSS_SELECTOR, "g.band")
    assert len(bands) == 4, "one band per branch of the demo's one layer"
    widths = [
        float(
            browser.execute_script(
                "return getComputedStyle(arguments[0].querySelector('path'))"
                ".strokeWidth",
                band,
            ).removesuffix("px")
        )
        for band in bands
    ]
    assert max(widths) > 0, "no band drawn"
    widest = bands[widths.index(max(widths))]
    info = diagrams[0].find_element(By.XPATH, "../following-sibling::div[1]")
    assert info.text == "hover a band"
    ActionChains(browser).move_to_element(widest).perform()
    branch = widest.get_attribute("data-branch")
    assert f"bert.encoder.layer.0: {branch}" in info.text
    assert "share " in info.text and "MaxProduct(sign='positive')" in info.text

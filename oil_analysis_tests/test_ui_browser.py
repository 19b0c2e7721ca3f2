"""The people's view in a real browser: `dagster dev` on a copy of the demo data, driven by Playwright
with Debian's chromium (never a downloaded browser build), and the fleet report opened from disk.

The upstream assets of ``cda`` are materialized in-process into the server's instance first (each
step of a UI-launched run is a new process, ~15 s apiece on a small machine); the UI then launches
``fleet_report`` for ``cda``, whose HTML file only that run writes. Screenshots go to
``test-artifacts/`` (git-ignored); the three of the README are copied to ``docs/screenshots/``.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import time
from urllib.parse import quote

import pytest
from dagster import AssetSelection, DagsterInstance, materialize

from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.storage.layout import fleet_report_path

from .conftest import DEMO_BRONZE, REPO
from .dagster_dev import DagsterDev, dagster_dev

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = REPO / "docs" / "screenshots"
GROUPS = {
    "bronze": ["bronze_lab_files"],
    "silver": ["silver_harmonized", "stewart_limits"],
    "gold": ["classified_reports", "machine_status_current", "limit_quality", "fleet_report"],
}
CLIENT = "cda"
VIEWPORT = {"width": 1280, "height": 800}
RUNS_QUERY = """
{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }
"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"
    ),
]


def shot(page, name: str, publish: bool = False, **kwargs) -> pathlib.Path:
    """A screenshot in test-artifacts/ (and docs/screenshots/ when ``publish``)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    if publish:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / path.name)
    return path


@pytest.fixture(scope="module")
def ui_root(tmp_path_factory) -> pathlib.Path:
    """A copy of the demo data whose cda upstream assets are already materialized (in the instance
    the server will use), so that the UI-launched run is one step: fleet_report."""
    base = tmp_path_factory.mktemp("ui")
    root = base / "data"
    shutil.copytree(DEMO_BRONZE, root / "bronze")
    for reserved in ("_registry", "_quarantine"):
        shutil.rmtree(root / "bronze" / reserved, ignore_errors=True)
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        result = materialize(
            all_assets,
            selection=AssetSelection.assets("fleet_report").upstream()
            - AssetSelection.assets("fleet_report"),
            partition_key=CLIENT,
            instance=instance,
            resources=build_resources(str(root)),
        )
    assert result.success
    assert not (root / fleet_report_path(CLIENT)).exists()
    return root


@pytest.fixture(scope="module")
def server(ui_root) -> DagsterDev:
    with dagster_dev(ui_root, ui_root.parent / "dagster_home") as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    yield pg
    context.close()


def wait_for_run(server: DagsterDev, partition: str, timeout: float = 150) -> dict:
    """The newest run of ``partition`` launched from the UI, once finished (GraphQL of the server)."""
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        runs = server.graphql(RUNS_QUERY)["runsOrError"]["results"]
        mine = [
            r
            for r in runs
            if {"key": "dagster/partition", "value": partition} in r["tags"]
            and {"key": "dagster/from_ui", "value": "true"} in r["tags"]
        ]
        run = mine[0] if mine else None
        if run and run["status"] in TERMINAL:
            return run
        time.sleep(1)
    raise AssertionError(f"no finished run of {partition} after {timeout:.0f} s: {run}\n{server.log_tail()}")


@pytest.fixture(scope="module")
def ui_run(server, browser) -> dict:
    """Materialize fleet_report for cda from its asset page: Materialize, pick the partition in the
    dialog, launch; then wait for the run to finish."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        page.goto(f"{server.url}/assets/fleet_report")
        page.get_by_role("button", name="Materialize").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Select a partition or create one").click()
        items = page.get_by_role("menuitem")
        items.filter(has_text="emin").first.wait_for()
        partitions = {t.split("\n")[0] for t in items.all_inner_texts()}
        items.filter(has_text=CLIENT).first.click()
        page.keyboard.press("Escape")  # closes the partition list, not the dialog
        launch = dialog.get_by_role("button", name="Launch 1 run")
        launch.wait_for()
        shot(page, "launch_dialog")
        launch.click()
        run = wait_for_run(server, CLIENT)
        page.goto(f"{server.url}/runs/{run['runId']}")
        page.get_by_text("fleet_report").first.wait_for()
        shot(page, "run")
        return {**run, "partitions_in_dialog": partitions}
    finally:
        context.close()


def node_label(asset: str) -> re.Pattern:
    """An asset's label in the zoomed-out graph, where long names are truncated in the middle."""
    return re.compile(f"^{re.escape(asset[:6])}.*{re.escape(asset[-6:])}$")


def test_asset_graph_shows_the_groups_and_their_assets(server, page, ui_run):
    expanded = ",".join(f"global@global:{g}" for g in GROUPS)
    page.goto(f"{server.url}/asset-groups?expanded={quote(expanded)}")
    page.get_by_text("Hide navigation").click()  # remembered by the browser: more room for the graph
    page.reload()
    graph = page.locator("[data-svg-viewport]")
    for group, assets in GROUPS.items():
        graph.get_by_text(group, exact=True).first.wait_for()
        for asset in assets:
            graph.get_by_text(node_label(asset)).first.wait_for()
    page.wait_for_timeout(500)  # the graph animates to its zoom-to-fit
    shot(page, "asset_graph", publish=True)


def test_materialize_one_partition_from_the_ui(server, ui_root, ui_run):
    assert {"cda", "emin"} <= ui_run["partitions_in_dialog"]
    assert ui_run["status"] == "SUCCESS", server.log_tail()
    assert (ui_root / fleet_report_path(CLIENT)).exists()
    assert not (ui_root / fleet_report_path("emin")).exists()


def test_partitions_and_materialization_metadata_in_the_ui(server, page, ui_run):
    page.goto(f"{server.url}/assets/classified_reports?view=partitions&partition={CLIENT}")
    for partition in ("cda", "emin"):
        page.get_by_text(partition, exact=True).first.wait_for()
    for key in ("rows", "status_distribution", "limits_version", "top_breached_essays", "preview"):
        page.get_by_text(key, exact=True).first.wait_for()
    page.locator("tr", has_text="status_over_time").get_by_text("Show Markdown").click()
    chart = page.get_by_role("dialog").locator("img").first
    chart.wait_for()
    assert chart.evaluate(
        "img => img.complete && img.naturalWidth > 0 && img.src.startsWith('data:image/svg')"
    )
    page.wait_for_timeout(800)  # the dialog fades in
    shot(page, "classified_reports_metadata", publish=True)

    page.goto(f"{server.url}/assets/fleet_report?view=partitions&partition={CLIENT}")
    for key in ("path", "machines_needing_action", "trend_charts", "limits_version"):
        page.get_by_text(key, exact=True).first.wait_for()
    shot(page, "fleet_report_metadata")


def test_fleet_report_opens_offline_with_trends_and_limits(ui_root, ui_run, page):
    report = ui_root / fleet_report_path(CLIENT)
    url = report.as_uri()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    # Anything but the file itself is recorded above and then refused here: nothing leaves the page.
    page.context.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
    page.goto(url)
    page.wait_for_load_state("load")
    assert page.title().startswith("Informe de flota")
    for section in ("resumen", "acciones", "tendencias", "datos"):
        assert page.locator(f"section#{section}").is_visible()
    assert page.locator("#acciones tbody tr").count() >= 1
    first_chart = page.locator("#tendencias figure.trend").first
    first_chart.wait_for()
    assert first_chart.locator("line.limit").count() >= 1
    assert page.locator("#tendencias .unit").first.get_by_text("Anormal").first.is_visible()
    assert "Versión de límites" in page.locator("#datos").inner_text()
    shot(page, "fleet_report_summary")
    page.locator("#tendencias").scroll_into_view_if_needed()
    page.evaluate("document.querySelector('#tendencias').scrollIntoView()")
    shot(page, "fleet_report", publish=True)
    assert [r for r in requests if r != url] == []


def _plain(markdown: str) -> str:
    """A contract description as the UI renders it: markdown marks gone, blanks collapsed."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown).replace("`", "").replace("**", "")
    return " ".join(text.split())


def test_columns_row_count_code_and_checks_in_the_catalog(server, page, ui_root):
    """Dagster-native metadata (issue 19): the Columns of classified_reports are the contract's, with
    their descriptions; the catalog shows the row count of the latest materialization, the source
    file of the asset, and the checks with descriptions (warning-only ones non-blocking)."""
    import pandas as pd

    from oil_analysis.domain.contracts import tables

    page.goto(f"{server.url}/assets/classified_reports?view=overview")
    page.get_by_text("Column name", exact=True).first.wait_for()
    page.get_by_text("Row count", exact=True).first.wait_for()
    body = " ".join(page.inner_text("body").split())
    rows = len(pd.read_parquet(ui_root / "gold" / CLIENT / "classified_reports.parquet"))
    assert rows > 0 and re.search(rf"Row count {rows:,}\b", body), body[:2000]
    lowered = body.lower()
    columns = tables()["classified_reports"][1]
    missing = [c.name for c in columns if c.name.lower() not in lowered]
    assert not missing, missing
    undescribed = [c.name for c in columns if _plain(c.description)[:60].lower() not in lowered]
    assert not undescribed, undescribed
    assert re.search(r"Source code Open gold\.py", body)
    shot(page, "classified_reports_columns", full_page=True)

    page.goto(f"{server.url}/assets/silver_harmonized?view=checks")
    page.get_by_text("fresh_samples", exact=True).first.click()
    page.get_by_text("This is a non-blocking asset check.").first.wait_for()
    page.get_by_text("newest sample is at most OIL_FRESHNESS_DAYS old", exact=False).first.wait_for()
    page.get_by_text("unique_sample_number", exact=True).first.click()
    page.get_by_text("sampleNumber is unique in silver", exact=False).first.wait_for()
    assert page.get_by_text("This is a non-blocking asset check.").count() == 0


def test_resources_show_their_effective_configuration(server, page, ui_root):
    """Deployment → Resources: the storage resource shows where the layout lives (its fields are
    empty on purpose; the description carries what they resolve to), the advisor which one runs."""
    page.goto(f"{server.url}/locations/__repository__@oil_analysis/resources/storage")
    page.get_by_text("Effective configuration (at load):").first.wait_for()
    body = page.inner_text("body")
    assert "mode: local" in body and f"data_root: {ui_root}" in body, body[:3000]
    page.goto(f"{server.url}/locations/__repository__@oil_analysis/resources/llm")
    page.get_by_text("Effective configuration (at load):").first.wait_for()
    assert "advisor: offline" in page.inner_text("body")
    shot(page, "resource_llm")

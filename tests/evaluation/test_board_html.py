"""The board's page (``index.html``): parsed, its image map against its own pixels, every board, the
``--html`` flag, and in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, which
``make test`` installs): it loads without a console error, holds every row of ``results.json``, sorts
by a clicked header, fetches nothing, and a hovered plot point marks its row.

``PDEBENCH_WRITE_SCREENSHOT=1`` writes the page's screenshot to ``docs/leaderboard_page.png`` (else
under the test's temporary folder); ``PDEBENCH_SCREENSHOT_FROM=FOLDER`` shoots the page of the board
results in ``FOLDER`` (a copy of it) instead of the test's own document.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from pdebench.evaluation import instance_board, linear_solver_board
from pdebench.evaluation.board_html import write_html
from pdebench.evaluation.board_io import results_document, write_results
from pdebench.evaluation.boards import BOARDS
from pdebench.evaluation.leaderboard import ROW_FORMAT, Row
from pdebench.evaluation.pareto import CostCurve, speedup_at_equal_accuracy

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

#: A burgers task: four rungs, the last off the front (dearer and worse than n=64); two models and a
#: failed one whose name and error hold HTML's special characters.
BURGERS_RUNGS = [("spectral n=16", 1e-4, 3e-2), ("spectral n=32", 3e-4, 2e-3), ("spectral n=64", 1e-3, 1e-5),
                 ("spectral n=64 dt/2", 2e-3, 2e-5)]
BURGERS_MODELS = [("FNO", 5e-5, 4e-3), ("U-Net", 6e-4, 1e-2)]
BROKEN = "broken <b>"
#: A rollout task: its rows also fill the rollout-metrics table.
KS_RUNGS = [("spectral n=32", 2e-4, 1e-1), ("spectral n=64", 8e-4, 1e-3)]
KS_MODELS = [("FNO", 1e-4, 5e-3)]


def _task_rows(task: str, rungs, models, rollout: bool = False, failed: str | None = None) -> list[Row]:
    """Operator-board rows as the board makes them: solver rungs, then models placed on the rungs'
    front by :func:`~pdebench.evaluation.pareto.speedup_at_equal_accuracy`."""
    def metrics(error: float, corr: float) -> dict:
        return {"nrmse": error, **({"corr_time": corr, "rollout_nrmse_gmean": 2 * error, "vrmse_1": error} if rollout else {})}

    rows = [Row(task, label, "solver", metrics=metrics(error, 10.0), nrmse=error, cost_s=cost, speedup_vs_reference=1e-2 / cost)
            for label, cost, error in rungs]
    curve = CostCurve(np.array([c for _, c, _ in rungs]), np.array([e for _, _, e in rungs]))
    for name, cost, error in models:
        rows.append(Row(task, name, "model", metrics=metrics(error, 20.0), nrmse=error, cost_s=cost, parameters=123_456,
                        placement=speedup_at_equal_accuracy(curve, error, cost).to_dict(), train_time_s=300.0,
                        train_samples_used=9_500, train_trajectories=12_000, speedup_vs_reference=1e-2 / cost))
    if failed:
        rows.append(Row(task, failed, "model", status="failed", error="ValueError: shape <3> & 'x' | \"y\""))
    return rows


def operator_document() -> dict:
    rows = _task_rows("burgers", BURGERS_RUNGS, BURGERS_MODELS, failed=BROKEN) + _task_rows("ks", KS_RUNGS, KS_MODELS, rollout=True)
    return results_document("tiny", None, tasks=[{"name": "burgers", "problem": "burgers1d"}, {"name": "ks", "problem": "ks1d"}],
                            rows=[asdict(r) for r in rows])


def ladder_document(kind: str, model: str) -> dict:
    """An instance or physics board document: a method and three finite-difference rungs, one off the front."""
    rungs = [(16, 1e-4, 1e-2), (32, 4e-4, 2.5e-3), (64, 2e-3, 3e-3)]
    rows = [instance_board.LadderRow("poisson", f"fd n={n}", "solver", n, rel_l2=e, cost_s=c) for n, c, e in rungs]
    curve = CostCurve(np.array([c for _, c, _ in rungs]), np.array([e for _, _, e in rungs]))
    rows.append(instance_board.LadderRow("poisson", model, "model", 32, rel_l2=1e-3, cost_s=2e-3,
                                         placement=speedup_at_equal_accuracy(curve, 1e-3, 2e-3).to_dict(),
                                         details={"train_time_s": 12.0, "train_steps": 100}))
    return results_document("tiny", kind, tasks=[{"name": "poisson"}], rows=[asdict(r) for r in rows])


def linear_solver_document() -> dict:
    rows = [linear_solver_board.SolverRow("poisson", name, kind, method, iterations_median=it, iterations_max=it + 2,
                                          converged_fraction=1.0, residual_median=1e-9, setup_median_s=1e-3,
                                          solve_median_s=t, total_median_s=t + 1e-3, iterations_vs_cg=it / 40, time_vs_amg=1.0)
            for name, kind, method, it, t in (("CG", "baseline", "cg", 40, 2e-3), ("DCDM", "dcdm", "dcdm", 12, 5e-3))]
    return results_document("tiny", "linear-solver", tasks=[{"name": "poisson"}], rows=[asdict(r) for r in rows])


DOCUMENTS = {"operator": operator_document, "instance": lambda: ladder_document("instance", "GP-HM"),
             "physics": lambda: ladder_document("physics", "NSM"), "linear-solver": linear_solver_document}


class Page(HTMLParser):
    """What a test reads of a page: every start tag with its attributes, the cells of each marked row
    (the first time the row is met) and the areas of each image map by the map's name."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: dict[str, list[str]] = {}
        self.maps: dict[str, list[dict[str, str]]] = {}
        self._cells: list[str] | None = None
        self._map: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "tr" and "data-row" in attributes:
            self._cells = self.rows.setdefault(attributes["data-row"], []) if attributes["data-row"] not in self.rows else []
        elif tag == "td" and self._cells is not None:
            self._cells.append("")
        elif tag == "map":
            self._map = attributes["name"]
            self.maps[self._map] = []
        elif tag == "area" and self._map is not None:
            self.maps[self._map].append(attributes)

    def handle_endtag(self, tag):
        if tag == "tr":
            self._cells = None
        elif tag == "map":
            self._map = None

    def handle_data(self, data):
        if self._cells:
            self._cells[-1] += data

    def all(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]


def row_ids(document: dict) -> set[str]:
    return {f"{r['task']}/{r['name']}" for r in document["rows"]}


def _written(tmp_path: Path, document: dict, kind: str = "operator") -> Path:
    out = tmp_path / kind
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(document))
    return write_html(out, document, BOARDS[kind].row_format)


def test_the_page_is_html5_with_every_row_and_no_outside_source(tmp_path):
    document = operator_document()
    path = _written(tmp_path, document)
    text = path.read_text(encoding="utf-8")
    assert text.lower().startswith("<!doctype html>") and path.name == "index.html"
    page = Page(text)
    assert page.all("html")[0]["lang"] == "en" and {"charset": "utf-8"} in page.all("meta")
    assert set(page.rows) == row_ids(document)
    for tag, attributes in page.tags:
        for key in ("src", "href"):
            assert not attributes.get(key, "#").startswith(("http:", "https:", "//")), (tag, attributes)
    assert "http://" not in text and "https://" not in text
    # the failed entry's name and error are text, not markup
    assert not any(t in ("b", "x") for t, _ in page.tags)
    assert page.rows[f"burgers/{BROKEN}"][:2] == [BROKEN, "failed: ValueError: shape <3> & 'x' | \"y\""]
    # the cells are the board's own, every column: those of results.md
    write_results(tmp_path, document, ROW_FORMAT)
    lines = (tmp_path / "results.md").read_text().splitlines()
    for task, name in (("burgers", "FNO"), ("burgers", "spectral n=32"), ("ks", "FNO")):
        line = next(line for line in lines if line.startswith(f"| {task} | ") and line.split("|")[2].strip(" *") == name)
        assert page.rows[f"{task}/{name}"] == [c.strip().replace("**", "") for c in line.split("|")[2:-1]]
    # the rollout task has its second table: its rows are marked twice
    assert text.count('<tr data-row="ks/FNO"') == 2 and text.count('<tr data-row="burgers/FNO"') == 1


def _image_and_areas(page: Page) -> list[tuple[np.ndarray, list[dict[str, str]]]]:
    """Each image map's decoded PNG (checked to be of the size the page gives it) and its areas."""
    maps = []
    for img in page.all("img"):
        if "usemap" in img:
            pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))))
            assert pixels.shape[:2] == (int(img["height"]), int(img["width"]))
            maps.append((pixels, page.maps[img["usemap"].removeprefix("#")]))
    return maps


def test_each_plot_point_of_the_image_map_lies_on_its_marker(tmp_path):
    page = Page(_written(tmp_path, operator_document()).read_text())
    (burgers, b_areas), (ks, k_areas) = _image_and_areas(page)
    # one area per model that succeeded and per rung of the front (n=64 dt/2 is off it)
    titles = [a["title"] for a in b_areas]
    assert [t.split(" (")[0] for t in titles] == ["FNO", "U-Net", "spectral n=16", "spectral n=32", "spectral n=64"]
    assert titles[0] == "FNO (model): nRMSE 0.004, cost 5e-05 s"
    assert [a["data-row"] for a in k_areas] == ["ks/FNO", "ks/spectral n=32", "ks/spectral n=64"]
    # the pixel under each centre is its marker's face: the models' colour cycle (C0, C1), the front black
    colours = {"FNO": (0x1F, 0x77, 0xB4), "U-Net": (0xFF, 0x7F, 0x0E)}
    for pixels, areas in ((burgers, b_areas), (ks, k_areas)):
        for area in areas:
            x, y, radius = (int(v) for v in area["coords"].split(","))
            assert radius > 0
            name = area["data-row"].split("/", 1)[1]
            expected = np.array(colours.get(name, (0, 0, 0))) / 255
            assert np.abs(pixels[y, x, :3] - expected).max() < 0.02, (name, pixels[y, x])


@pytest.mark.parametrize("kind", list(BOARDS))
def test_every_board_has_a_page_with_all_its_rows(tmp_path, kind):
    document = DOCUMENTS[kind]()
    text = _written(tmp_path, document, kind).read_text()
    page = Page(text)
    assert set(page.rows) == row_ids(document)
    assert all(len(cells) == len(BOARDS[kind].row_format.headers) for cells in page.rows.values())
    areas = sorted(a["data-row"] for a in page.all("area"))
    assert (BOARDS[kind].row_format.front is None) == (kind == "linear-solver")
    if kind == "linear-solver":
        assert not areas and not page.all("map")
    elif kind == "operator":  # the models that succeeded and the front's rungs (n=64 dt/2 is off it)
        assert areas == sorted([f"burgers/{m}" for m, _, _ in BURGERS_MODELS] + [f"burgers/{r}" for r, _, _ in BURGERS_RUNGS[:3]]
                               + [f"ks/{m}" for m, _, _ in KS_MODELS] + [f"ks/{r}" for r, _, _ in KS_RUNGS])
    else:  # the method and the two rungs of the front (fd n=64 is dearer and worse than n=32)
        assert areas == sorted(["poisson/fd n=16", "poisson/fd n=32", f"poisson/{document['rows'][-1]['name']}"])
    env = document["environment"]
    for key in ("hardware", "cpu_count", "device", "threads", "torch", "pdebench", "python", "git_revision"):
        assert f"<dt>{key.replace('_', ' ')}</dt><dd>{env[key]}</dd>" in text


def test_the_page_inlines_the_boards_figures_of_its_task(tmp_path):
    out = tmp_path / "operator"
    out.mkdir()
    for name in ("ks_rollout.png", "ks_rollout_mse.png", "burgers_FNO_sample0.png", "burgers_error_vs_cost.png",
                 "burgers_resolution.png", "other_rollout.png"):
        (out / name).write_bytes(b"\x89PNG-" + name.encode())
    page = Page(_written(tmp_path, operator_document()).read_text())
    inlined = {base64.b64decode(img["src"].split(",", 1)[1]) for img in page.all("img") if "usemap" not in img}
    # the page draws its own accuracy-cost plot: the board's PNG of it is not repeated; no other task's
    assert inlined == {b"\x89PNG-ks_rollout.png", b"\x89PNG-ks_rollout_mse.png", b"\x89PNG-burgers_FNO_sample0.png",
                       b"\x89PNG-burgers_resolution.png"}


def test_leaderboard_html_writes_the_page_beside_results_json(tmp_path, capsys):
    import yaml

    from pdebench.cli import main

    suite = {"name": "tiny", "output": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
             "tasks": [{"name": "tiny", "problem": "burgers1d", "problem_args": {"nx": 32, "n_out": 1}, "samples": 2,
                        "reference_refinement": 2, "ladder_resolutions": [16], "repeats": 1}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["leaderboard", "--suite", str(path), "--format", "markdown"]) == 0
    assert not (tmp_path / "out" / "index.html").exists()  # only asked for
    assert main(["leaderboard", "--suite", str(path), "--format", "markdown", "--html"]) == 0
    page = tmp_path / "out" / "index.html"
    assert str(page) in capsys.readouterr().err.replace("\n", "")
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(Page(page.read_text()).rows) == row_ids(document) and document["rows"]


# ------------------------------------------------------------------------------------ in Chromium
@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, its console log kept (``goog:loggingPrefs``)."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(f"Debian's chromium and chromium-driver are not installed ({CHROMIUM}, {CHROMEDRIVER}); make test installs them")
    from selenium import webdriver  # the test extra: missing, the test fails (only the browser may be absent)
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="pdebench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path: Path) -> list[dict]:
    """Load ``path`` and return the console entries it logged."""
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(path.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    return driver.get_log("browser")


def _order(driver, section: int, table: int = 0) -> list[str]:
    """The ``data-row`` of the rows of the ``table``-th table of the ``section``-th task, as shown."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])[arguments[1]].tBodies[0].rows).map(r => r.dataset.row)",
        f"#task-{section} table.board", table)


def _click_header(driver, section: int, header: str, table: int = 0) -> None:
    from selenium.webdriver.common.by import By

    tables = driver.find_elements(By.CSS_SELECTOR, f"#task-{section} table.board")
    next(th for th in tables[table].find_elements(By.TAG_NAME, "th") if th.text.strip(" ▲▼") == header).click()


def test_in_chromium_the_page_loads_holds_every_row_and_fetches_nothing(browser, tmp_path):
    document = operator_document()
    log = _open(browser, _written(tmp_path, document))
    assert not [entry for entry in log if entry["level"] == "SEVERE"], log
    shown = browser.execute_script("return Array.from(document.querySelectorAll('tr[data-row]')).map(r => r.dataset.row)")
    assert set(shown) == row_ids(document)
    outside = browser.execute_script("""
        return Array.from(document.querySelectorAll('[src], [href]'))
          .map(e => e.getAttribute('src') || e.getAttribute('href'))
          .filter(v => !(v.startsWith('data:') || v.startsWith('#')));""")
    assert outside == []
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith("data:") for name in fetched), fetched


def test_in_chromium_a_click_on_a_header_sorts_the_rows_both_ways(browser, tmp_path):
    document = operator_document()
    _open(browser, _written(tmp_path, document))
    burgers = [r for r in document["rows"] if r["task"] == "burgers"]
    ok = [r for r in burgers if r["status"] == "ok"]
    failed = [f"burgers/{r['name']}" for r in burgers if r["status"] != "ok"]
    by_error = [f"burgers/{r['name']}" for r in sorted(ok, key=lambda r: r["nrmse"])]
    _click_header(browser, 0, "nRMSE")
    assert _order(browser, 0) == by_error + failed  # numbers ascending, the failed row's empty cell last
    _click_header(browser, 0, "nRMSE")
    assert _order(browser, 0) == by_error[::-1] + failed
    # "4.53× (faster than the solver)": sorted by its number; the rungs' "(solver)" text after the numbers
    models = sorted((r for r in ok if r["kind"] == "model"), key=lambda r: r["placement"]["speedup"])
    _click_header(browser, 0, "speed-up at equal accuracy")
    order = _order(browser, 0)
    assert order[:len(models)] == [f"burgers/{r['name']}" for r in models] and order[-1] == failed[0]
    # the rollout table sorts on its own: "≥ 10" (the rungs) before "≥ 20" (the model, listed first)
    assert _order(browser, 1, 1) == ["ks/FNO", "ks/spectral n=32", "ks/spectral n=64"]
    _click_header(browser, 1, "corr_t", 1)
    assert _order(browser, 1, 1) == ["ks/spectral n=32", "ks/spectral n=64", "ks/FNO"]
    assert _order(browser, 1, 0) == ["ks/FNO", "ks/spectral n=32", "ks/spectral n=64"]


def test_in_chromium_hovering_a_plot_point_names_it_and_marks_its_row(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _open(browser, _written(tmp_path, operator_document()))
    image = browser.find_element(By.CSS_SELECTOR, "#task-0 img[usemap]")
    areas = browser.find_elements(By.CSS_SELECTOR, "#task-0 map area")
    assert len(areas) == len(BURGERS_MODELS) + 3
    for area in areas:
        x, y, _ = (int(v) for v in area.get_attribute("coords").split(","))
        row = area.get_attribute("data-row")
        assert area.get_attribute("title").startswith(row.split("/", 1)[1] + " (")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
        ActionChains(browser).move_to_element_with_offset(image, x - image.size["width"] // 2,
                                                          y - image.size["height"] // 2).perform()
        marked = browser.execute_script("return Array.from(document.querySelectorAll('tr.hover')).map(r => r.dataset.row)")
        assert marked == [row], (row, marked)


def test_in_chromium_a_screenshot_of_the_page(browser, tmp_path):
    source = os.environ.get("PDEBENCH_SCREENSHOT_FROM")
    if source:
        out = tmp_path / "board"
        shutil.copytree(source, out)
        document = json.loads((out / "results.json").read_text())
        path = write_html(out, document, BOARDS[document.get("kind", "operator")].row_format)
    else:
        path = _written(tmp_path, operator_document())
    assert not [e for e in _open(browser, path) if e["level"] == "SEVERE"]
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(max(int(height), 600), 6000))
    target = ROOT / "docs" / "leaderboard_page.png" if os.environ.get("PDEBENCH_WRITE_SCREENSHOT") == "1" else tmp_path / "page.png"
    assert browser.save_screenshot(str(target))
    shot = matplotlib.image.imread(str(target))
    assert shot.shape[1] >= 1000 and not math.isclose(float(shot[..., :3].std()), 0.0)
    browser.set_window_size(1400, 1000)

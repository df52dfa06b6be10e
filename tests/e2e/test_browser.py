"""The class in a real browser (Playwright driving Debian's chromium) on the shared test hub.

As a student: log in, see only the student tools (no Formgrader / Create Assignment, no news
popup), fetch lesson 1 from the assignment list and open it, fill in `corr2d`, run the cells, see
the sliding-window animation step, click Validate and read the result; open lesson 4 and move a
slider of its explorer, the figure changes. As the instructor: the same menu has the instructor
tools, and formgrader lists both submissions with their scores. Screenshots of each step go to
tests/e2e/artifacts/.
"""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from grader import samples
from grader.course import student_notebook

from .conftest import ASSIGNMENT, EXPLORER, HALF_SOLVED, Shots, expected_cell_scores, login

pytestmark = pytest.mark.slow

def nbgrader_menu(page) -> list[str]:
    page.get_by_role("menuitem", name="Nbgrader").click()
    items = [t.split("\t")[0].strip() for t in page.locator(".lm-Menu-content .lm-Menu-item:visible").all_inner_texts()]
    return [t for t in items if t]


def disabled_plugins(page) -> dict:
    return page.evaluate("JSON.parse(document.getElementById('jupyter-config-data').textContent).disabledExtensions || {}")


def notebook(page):
    """The notebook panel in front."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")


def run_all(page) -> None:
    """Run All Cells, once the notebook's kernel is up (idle), so no cell runs before it is."""
    page.locator(".jp-StatusBar-Item").filter(has_text=re.compile(r"\| Idle")).first.wait_for()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()


def test_student_fetches_works_validates_and_sees_the_animation(browser, classroom, graded_class, artifacts):
    room = classroom
    learner = room.students[2]
    # windowed notebooks only render what is on screen; a test reads cells far apart
    room.call(learner, "PUT", "/lab/api/settings/@jupyterlab/notebook-extension:tracker",
              {"raw": json.dumps({"windowingMode": "none"})})
    shots = Shots(artifacts, "student")
    context, page = login(browser, room, learner, shots)
    try:
        # student tools only, and no "get notified about news?" popup
        page.wait_for_timeout(3000)          # the news question would come as a toast by now
        shots(page, "lab")
        assert "@jupyterlab/apputils-extension:announcements" in disabled_plugins(page)
        assert page.get_by_text("official Jupyter news").count() == 0
        assert page.locator(".jp-Notification-Toast").count() == 0
        menu = nbgrader_menu(page)
        shots(page, "nbgrader-menu")
        assert menu == ["Assignment List"], menu
        assert page.get_by_title("Create Assignment").count() == 0

        # fetch lesson 1 from the assignment list and open it
        page.get_by_text("Assignment List", exact=True).click()
        released = page.locator("#released_assignments_list .list_item").filter(has_text=ASSIGNMENT)
        shots(page, "assignment-list")
        released.get_by_role("button", name="Fetch").click()
        page.locator("#fetched_assignments_list a.assignment-notebooks-link").filter(has_text=ASSIGNMENT).click()
        page.locator(f"#nbgrader-convlab-{ASSIGNMENT} a[href='#']").filter(has_text=ASSIGNMENT).click()
        nb = notebook(page)
        nb.locator(".jp-Cell").first.wait_for()
        shots(page, "lesson1-open")

        # fill in corr2d (only), then run every cell
        answer = next(c.source for c in samples.solved(ASSIGNMENT).cells
                      if c.metadata.get("nbgrader", {}).get("grade_id") == "corr2d_impl")
        cell = nb.locator(".jp-CodeCell").filter(has_text="def corr2d(").first
        cell.scroll_into_view_if_needed()
        cell.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(answer)
        shots(page, "corr2d-filled")
        run_all(page)
        # execution stops at the first exercise not done yet: convolve2d
        nb.locator(".jp-OutputArea-output").filter(has_text="NotImplementedError").first.wait_for()
        errors = nb.locator(".jp-CodeCell").filter(has=page.locator(".jp-OutputArea-output", has_text="NotImplementedError"))
        assert "convolve2d" in errors.first.inner_text()
        assert nb.locator(".jp-CodeCell").filter(has_text="corr2d reproduces the worked example") \
                 .locator(".jp-OutputArea-output").filter(has_text="Error").count() == 0

        # the sliding-window animation: an image whose frame changes with "Next frame"
        anim = nb.locator(".jp-OutputArea-output .animation").first
        anim.scroll_into_view_if_needed()
        frame = anim.locator("img").first
        first = frame.get_attribute("src")
        assert first and first.startswith("data:image/png;base64,")
        shots(page, "animation-frame-0")
        anim.locator("button[title='Next frame']").click()
        page.wait_for_function("([img, src]) => img.getAttribute('src') !== src",
                               arg=[frame.element_handle(), first])
        shots(page, "animation-frame-1")

        # Validate: the result names the unfinished exercise, not corr2d
        page.keyboard.press("Escape")
        nb.locator(".jp-Toolbar").get_by_text("Validate", exact=True).click()
        dialog = page.locator(".jp-Dialog")
        dialog.get_by_text("Validation Results").wait_for()
        page.wait_for_function("() => /failed|passed|success/i.test(document.querySelector('.jp-Dialog').innerText)")
        result = dialog.inner_text()
        shots(page, "validate")
        assert re.search(r"following cells? failed", result), result[:2000]
        assert "convolve2d" in result and "NotImplementedError" in result
        assert "corr2d reproduces the worked example" not in result
        dialog.get_by_role("button", name="Ok").click()
    except Exception:
        shots(page, "FAILED")
        raise
    finally:
        context.close()


def test_slider_explorer_renders_and_reacts(browser, classroom, artifacts):
    room = classroom
    learner = room.students[2]
    nb_json = json.loads(nbformat.writes(nbformat.read(student_notebook(EXPLORER), as_version=4)))
    room.call(learner, "PUT", f"/api/contents/{EXPLORER}.ipynb", {"type": "notebook", "format": "json", "content": nb_json})
    room.call(learner, "PUT", "/lab/api/settings/@jupyterlab/notebook-extension:tracker",
              {"raw": json.dumps({"windowingMode": "none"})})
    shots = Shots(artifacts, "explorer")
    context, page = login(browser, room, learner, shots)
    try:
        page.goto(f"{room.hub.url}/user/{learner}/lab/tree/{EXPLORER}.ipynb?reset")   # only this notebook open
        nb = page.locator(".jp-NotebookPanel").filter(has_text="explore_conv_windows")
        nb.locator(".jp-Cell").first.wait_for()
        run_all(page)
        explorer = nb.locator(".jp-CodeCell").filter(has_text="convlab.explore_conv_windows(").first
        box = explorer.locator(".widget-interact").first
        try:
            box.wait_for()
        except Exception:
            raise AssertionError("no slider explorer after running the cells; the cell shows: "
                                 + explorer.inner_text()[:2000]) from None
        box.scroll_into_view_if_needed()
        figure = box.locator("img").first
        figure.wait_for()
        before = figure.get_attribute("src")
        assert box.locator(".widget-slider").count() >= 4
        shots(page, "explorer")
        readout = box.locator(".widget-slider").first.locator(".widget-readout")
        value = int(readout.inner_text())
        box.locator(".widget-slider").first.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("([img, src]) => img.isConnected === false || img.getAttribute('src') !== src",
                               arg=[figure.element_handle(), before])
        after = box.locator("img").first
        after.wait_for()
        assert after.get_attribute("src") != before
        assert int(readout.inner_text()) == value + 1
        shots(page, "explorer-moved")
    except Exception:
        shots(page, "FAILED")
        raise
    finally:
        context.close()


def run_menu(page, item: str) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text(item, exact=True).click()


def figure_of(box):
    """The explorer's figure (its first image) and that image's data URL."""
    figure = box.locator("img").first
    figure.wait_for()
    return figure, figure.get_attribute("src")


def redrawn(page, box, act) -> str:
    """Do `act()`, then wait until the explorer's figure is a new picture; return the new one."""
    figure, before = figure_of(box)
    act()
    page.wait_for_function("([img, src]) => img.isConnected === false || img.getAttribute('src') !== src",
                           arg=[figure.element_handle(), before])
    after = figure_of(box)[1]
    assert after and after != before and after.startswith("data:image/png;base64,")
    return after


def nudge(page, slider) -> None:
    """One step right on an ipywidgets slider (keyboard, as a user can)."""
    slider.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")


def _kernel_editor(page, box) -> None:
    """Lesson 2: a preset, the sign flip and one edited number each redraw the response."""
    boxes = box.locator(".widget-text input")
    assert boxes.count() == 9
    redrawn(page, box, lambda: box.locator("select").select_option("Laplacian"))
    assert [float(boxes.nth(i).input_value()) for i in range(9)] == [0, 1, 0, 1, -4, 1, 0, 1, 0]
    redrawn(page, box, lambda: box.get_by_role("button", name="flip sign").click())
    assert float(boxes.nth(4).input_value()) == 4
    def edit():
        boxes.nth(0).fill("2")
        boxes.nth(0).press("Enter")
    redrawn(page, box, edit)


def _learning_rate(page, box) -> None:
    """Lesson 3: the zero_grad box and the lr slider each redraw the descent."""
    redrawn(page, box, lambda: box.get_by_role("checkbox").click())
    lr = box.locator(".widget-slider").filter(has_text="lr").first
    assert lr.locator(".widget-readout").inner_text().strip() == "0.030"
    redrawn(page, box, lambda: nudge(page, lr))
    assert lr.locator(".widget-readout").inner_text().strip() == "0.031"


def _shift(page, box) -> None:
    """Lesson 5: one more pixel of shift redraws the pooled maps."""
    shift = box.locator(".widget-slider").filter(has_text="shift").first
    assert shift.locator(".widget-readout").inner_text().strip() == "1"
    redrawn(page, box, lambda: nudge(page, shift))
    assert shift.locator(".widget-readout").inner_text().strip() == "2"


# lesson, the start of the explorer's cell, the widget's outermost element, how to drive it
EXPLORERS = [
    ("02_edge_detection", "convlab.explore_kernel(", ".widget-vbox", _kernel_editor),
    ("03_learning_a_kernel", "convlab.explore_learning_rate(", ".widget-interact", _learning_rate),
    ("05_max_pooling_cifar10", "convlab.explore_shift_pooling(", ".widget-interact", _shift),
]


def test_lesson_explorers_render_and_react(browser, classroom, artifacts):
    """Lessons 2, 3 and 5: in each solved notebook, run everything above the explorer and the
    explorer's cell, then use its controls; each use redraws the figure."""
    room = classroom
    learner = room.students[2]
    room.call(learner, "PUT", "/lab/api/settings/@jupyterlab/notebook-extension:tracker",
              {"raw": json.dumps({"windowingMode": "none"})})
    for lesson, *_ in EXPLORERS:
        nb_json = json.loads(nbformat.writes(samples.solved(lesson)))
        room.call(learner, "PUT", f"/api/contents/{lesson}.ipynb", {"type": "notebook", "format": "json", "content": nb_json})
    shots = Shots(artifacts, "explorers")
    context, page = login(browser, room, learner, shots)
    try:
        for lesson, call, outer, drive in EXPLORERS:
            page.goto(f"{room.hub.url}/user/{learner}/lab/tree/{lesson}.ipynb?reset")
            nb = notebook(page)
            cell = nb.locator(".jp-CodeCell").filter(has_text=call).first
            cell.wait_for()
            page.locator(".jp-StatusBar-Item").filter(has_text=re.compile(r"\| Idle")).first.wait_for()
            cell.scroll_into_view_if_needed()
            cell.locator(".jp-InputPrompt").click()          # select it (command mode)
            run_menu(page, "Run All Above Selected Cell")
            run_menu(page, "Run Selected Cell and Do not Advance")
            box = cell.locator(outer).first
            try:
                box.wait_for()
            except Exception:
                raise AssertionError(f"{lesson}: no explorer after running the cells; the cell shows: "
                                     + cell.inner_text()[:2000]) from None
            box.scroll_into_view_if_needed()
            shots(page, f"{lesson}-start")
            drive(page, box)
            shots(page, f"{lesson}-used")
            errors = nb.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert nb.locator(".jp-OutputArea-output").filter(has_text="Traceback").count() == 0, \
                [e.inner_text()[:500] for e in errors.all()]
    except Exception:
        shots(page, "FAILED")
        raise
    finally:
        context.close()


def test_instructor_sees_both_submissions_in_formgrader(browser, classroom, graded_class, artifacts):
    room = classroom
    shots = Shots(artifacts, "instructor")
    context, page = login(browser, room, room.instructor, shots)
    try:
        menu = nbgrader_menu(page)
        shots(page, "nbgrader-menu")
        assert {"Assignment List", "Formgrader", "Create assignment"} <= set(menu), menu
        assert page.get_by_title("Create Assignment").count() >= 1     # its sidebar tab, absent for students
        page.keyboard.press("Escape")
        page.goto(f"{room.hub.url}/user/{room.instructor}/formgrader/manage_submissions/{ASSIGNMENT}")
        table = page.locator("table")
        for student in (graded_class.solved, graded_class.half):
            table.get_by_text(student).first.wait_for()
        shots(page, "manage-submissions")
        full = sum(expected_cell_scores(None).values())
        half = sum(expected_cell_scores(HALF_SOLVED).values())
        rows = {s: page.locator("tr").filter(has_text=s).first.inner_text() for s in (graded_class.solved, graded_class.half)}
        assert re.search(rf"\b{full:g}\s*/\s*{full:g}\b", rows[graded_class.solved]), rows
        assert re.search(rf"\b{half:g}\s*/\s*{full:g}\b", rows[graded_class.half]), rows
    except Exception:
        shots(page, "FAILED")
        raise
    finally:
        context.close()

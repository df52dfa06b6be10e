"""`make lab` (one learner, no hub) in a real browser: the lesson opens, the student's nbgrader tools
are there (Assignment List, Validate) and the instructor's are not, and no news popup."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import urllib.request

import pytest

from grader.course import ROOT
from hub.local import free_port

from .conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT, Shots
from .test_browser import disabled_plugins, nbgrader_menu

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def make_lab():
    if not CHROMIUM.exists():
        if os.geteuid() != 0:
            pytest.skip("needs Debian's chromium: run `sudo make hub-deps` (as root `make test` installs it)")
        pytest.fail("chromium is missing: run `make hub-deps`")
    port, token = free_port(), secrets.token_hex(16)
    args = f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token}"
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, f"make lab exited:\n{proc.stdout.read().decode(errors='replace')}"
                assert time.monotonic() < deadline, "make lab did not answer within 120 s"
                time.sleep(0.5)
        yield url, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_make_lab_shows_student_tools_only_and_no_news_popup(make_lab, artifacts):
    from playwright.sync_api import sync_playwright
    url, token = make_lab
    shots = Shots(artifacts, "make-lab")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT)
            page.goto(f"{url}/lab/tree/01_cross_correlation/01_cross_correlation.ipynb?reset&token={token}")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            page.wait_for_timeout(3000)          # the news question would come as a toast by now
            shots(page, "lesson1")
            assert "@jupyterlab/apputils-extension:announcements" in disabled_plugins(page)
            assert page.get_by_text("official Jupyter news").count() == 0
            assert page.locator(".jp-Notification-Toast").count() == 0
            assert page.locator(".jp-NotebookPanel .jp-Toolbar").get_by_text("Validate", exact=True).count() == 1
            assert page.get_by_title("Create Assignment").count() == 0
            menu = nbgrader_menu(page)
            shots(page, "nbgrader-menu")
            assert menu == ["Assignment List"], menu
            page.get_by_text("Assignment List", exact=True).click()
            page.get_by_text("There are no assignments to fetch").wait_for()
            shots(page, "assignment-list")
        finally:
            browser.close()

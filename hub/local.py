"""Run the one-machine hub from Python: OS accounts, free ports, the hub process, its REST API.

Used by `make hub` (hub/demo.py) and by the end-to-end tests (tests/e2e/). Everything here needs
root (it creates OS users and JupyterHub spawns servers as them) and cleans up what it started:
`LocalHub.stop()` kills the hub, its proxy and every process of the class's accounts, by pid.
"""
from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import runtime

HUB = Path(__file__).resolve().parent
ROOT = HUB.parent
STAFF = runtime.staff_dir()                   # the hub runs from the installed course (hub/runtime.py)
CONFIG = STAFF / "hub" / "jupyterhub_config.py"


def hub_python() -> Path:
    """The Python the hub, the users' servers and kernels and the instructor's grader run."""
    return runtime.python()


def missing_tools() -> list[str]:
    """What the hub needs and this machine lacks, each with how to get it."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root (the hub creates OS accounts and starts servers as them): run as root / with sudo")
        return problems
    if not CONFIG.is_file() or not hub_python().exists():
        problems.append(f"the course is not installed for the hub in {runtime.RUNTIME}: run `make hub-deps`")
        return problems
    changed = runtime.stale()
    if changed:
        problems.append(f"the course installed in {runtime.RUNTIME} is older than this clone ({len(changed)} "
                        f"file(s) differ, e.g. {changed[0]}): run `make hub-deps`")
    if not shutil.which("configurable-http-proxy", path=str(runtime.RUNTIME / "node" / "bin")):
        problems.append("configurable-http-proxy: run `make hub-deps` (npm install into .venv/node)")
    if not runtime.runnable_by_others(hub_python()):
        problems.append(f"{hub_python()} cannot be run by other accounts: run `make hub-deps`")
    return problems


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- OS accounts -------------------------------------------------------------------------------

def create_user(name: str, password: str) -> None:
    """A fresh OS account with a home folder and the given password (removed first if it exists)."""
    delete_user(name)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True,
                   capture_output=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def kill_user_processes(name: str) -> None:
    """SIGKILL every process running as `name` (the servers, kernels and sandboxes the hub started
    for that account), by pid."""
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    def alive():   # zombies are dead already (their parent, the hub, reaps them)
        return [p for p in psutil.process_iter(["uids", "status"])
                if p.info["uids"] and p.info["uids"].real == uid and p.info["status"] != psutil.STATUS_ZOMBIE]

    deadline = time.monotonic() + 20
    while (procs := alive()) and time.monotonic() < deadline:
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        time.sleep(0.1)


def delete_user(name: str) -> None:
    if not user_exists(name):
        return
    kill_user_processes(name)
    subprocess.run(["userdel", "--remove", name], capture_output=True)
    if user_exists(name):
        subprocess.run(["userdel", "--force", "--remove", name], check=True, capture_output=True)


# --- the hub -----------------------------------------------------------------------------------

class HubError(RuntimeError):
    pass


@dataclass
class LocalHub:
    """A JupyterHub started from hub/jupyterhub_config.py with its own state folder and ports."""
    state: Path
    instructors: list[str]
    students: list[str]
    exchange: Path
    course: Path | None = None        # the staff's shared course folder (default: beside the state)
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(24))
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    proxy: subprocess.Popen | None = None      # the proxy runs on its own (hub/proxy.py)
    tls: tuple[Path, Path] | None = None       # (certificate, key): the proxy serves https
    internal_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    _children: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PATH": f"{hub_python().parent}{os.pathsep}{env.get('PATH', '')}",
            "CONVLAB_HUB_PORT": str(self.port),
            "CONVLAB_HUB_INTERNAL_PORT": str(self.internal_port),
            "CONVLAB_PROXY_API_PORT": str(self.proxy_api_port),
            "CONVLAB_HUB_STATE": str(self.state),
            "CONVLAB_EXCHANGE": str(self.exchange),
            "CONVLAB_COURSE_DIR": str(self.course or self.state.parent / "course"),
            "CONVLAB_INSTRUCTORS": ",".join(self.instructors),
            "CONVLAB_STUDENTS": ",".join(self.students),
            "CONVLAB_HUB_API_TOKEN": self.token,
            "CONVLAB_FAKE_DATA": os.environ.get("CONVLAB_FAKE_DATA", "1"),
            # each student's server and kernels (several lessons open at once in the browser tests)
            "CONVLAB_STUDENT_MEMORY": os.environ.get("CONVLAB_STUDENT_MEMORY", "3G"),
            # the idle culler runs (tests/e2e culls once, at the end, with its token); nobody is culled before
            "CONVLAB_CULL_IDLE": os.environ.get("CONVLAB_CULL_IDLE", "3600"),
        })
        if self.tls:
            env["CONVLAB_SSL_CERT"], env["CONVLAB_SSL_KEY"] = map(str, self.tls)
        return env

    def start_proxy(self) -> None:
        """configurable-http-proxy as its own process (hub/proxy.py), as a service would run it."""
        log = open(self.log_path, "ab")
        self.proxy = subprocess.Popen([str(hub_python()), str(STAFF / "hub" / "proxy.py")], cwd=self.state,
                                      env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proxy.poll() is not None:
                raise HubError(f"the proxy exited with {self.proxy.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.proxy_api_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise HubError(f"the proxy did not listen within 30 s:\n{self.log_tail()}")

    def start(self, timeout: float = 60, quiet: bool = True) -> None:
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.log_path = self.log_path or self.state / "jupyterhub.log"
        if self.proxy is None or self.proxy.poll() is not None:
            self.start_proxy()
        log = open(self.log_path, "ab") if quiet else None
        self.proc = subprocess.Popen(
            [str(hub_python().parent / "jupyterhub"), "-f", str(CONFIG)],
            cwd=self.state, env=self.env(), stdout=log, stderr=subprocess.STDOUT if quiet else None,
            start_new_session=True)
        if log:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._remember_children()
            if self.proc.poll() is not None:
                raise HubError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/")
                if self._services_answer():
                    return
            except (urllib.error.URLError, ConnectionError, HubError):
                pass
            time.sleep(0.3)
        raise HubError(f"jupyterhub (or its services) did not answer on {self.url} within {timeout:g} s:\n"
                       f"{self.log_tail()}")

    def _services_answer(self) -> bool:
        """The hub's managed services answer through the proxy (after a restart too), not 502/503."""
        if self.env().get("CONVLAB_FEEDBACK", "1") == "0":
            return True
        try:
            request("GET", f"{self.url}/services/convlab-feedback/api/status", self.token, timeout=5)
        except HubError as err:
            return " HTTP 502" not in str(err) and " HTTP 503" not in str(err)
        return True

    def log_tail(self, n: int = 60) -> str:
        if self.log_path and self.log_path.exists():
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return "(no log)"

    def _remember_children(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self._children.update(c.pid for c in psutil.Process(self.proc.pid).children(recursive=True))
            except psutil.Error:
                pass

    def stop_hub(self, timeout: float = 30) -> None:
        """Stop the hub process only (SIGTERM, as a service manager would): the proxy and the
        users' servers keep running."""
        if self.proc and self.proc.poll() is None:
            self._remember_children()
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)

    def restart(self) -> None:
        self.stop_hub()
        self.start()

    def stop(self) -> None:
        """Stop the hub (it stops the servers and the proxy), then kill whatever it started that is
        still there: its remembered children and every process of the class's accounts."""
        self._remember_children()
        # The users' servers first (by uid: servers, kernels, sandboxes), so the hub's own
        # shutdown does not wait for each of them to stop politely.
        for name in self.instructors + self.students:
            kill_user_processes(name)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proxy and self.proxy.poll() is None:
            self.proxy.kill()
            self.proxy.wait(timeout=10)
        leftovers = []
        for pid in self._children:
            try:
                p = psutil.Process(pid)
                p.kill()
                leftovers.append(p)
            except psutil.Error:
                pass
        psutil.wait_procs(leftovers, timeout=5)
        for name in self.instructors + self.students:
            kill_user_processes(name)

    # --- REST API (as the admin service convlab-admin) ---

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        return request(method, f"{self.url}/hub/api{path}", self.token, body, timeout=timeout)

    def start_server(self, user: str, timeout: float = 120, wait: bool = True) -> str | None:
        """Start `user`'s server through the REST API; with `wait`, return its base URL once it
        answers (a server already starting or running is waited for, not started again)."""
        model = self.api("GET", f"/users/{user}")
        if not model.get("pending") and not model.get("servers", {}).get(""):
            self.api("POST", f"/users/{user}/server")
        if not wait:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}")
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                return f"{self.url}{server['url'].rstrip('/')}"
            if not model.get("pending") and not server:
                raise HubError(f"{user}'s server failed to start:\n{self.log_tail()}")
            time.sleep(0.5)
        raise HubError(f"{user}'s server did not start within {timeout:g} s:\n{self.log_tail()}")


def request(method: str, url: str, token: str, body=None, timeout: float = 30, form: bool = False):
    """One HTTP request with `Authorization: token ...`; JSON in and out. Raises HubError with the
    response's text on an HTTP error."""
    headers = {"Authorization": f"token {token}"}
    data = None
    if body is not None:
        if form:
            data = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in body.items()).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as err:
        raise HubError(f"{method} {url}: HTTP {err.code}: {err.read().decode(errors='replace')[:2000]}") from None
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def log_in(base_url: str, user: str, password: str, context=None) -> bool:
    """Does the hub's login form take `user`/`password`? (Its answer only: the redirect that
    would start the user's server is not followed.)"""
    import http.cookiejar
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect,
                                         urllib.request.HTTPSHandler(context=context))
    opener.open(f"{base_url}/hub/login", timeout=30).read()
    xsrf = next((c.value for c in jar if c.name == "_xsrf"), "")
    data = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": xsrf}).encode()
    try:
        with opener.open(f"{base_url}/hub/login?_xsrf={urllib.parse.quote(xsrf)}", data=data, timeout=60):
            return False                     # 200: the form again, with its error
    except urllib.error.HTTPError as err:
        if err.code in (302, 303):
            return "/login" not in (err.headers.get("Location") or "")
        if err.code == 403:
            return False
        raise

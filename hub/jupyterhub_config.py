"""JupyterHub for one convlab class on one machine: `jupyterhub -f hub/jupyterhub_config.py` (as root).

Who is who
    Real OS accounts log in with their own password (PAM), so every notebook server runs as its
    student's uid and nbgrader's exchange knows who submitted what. Two JupyterHub groups, named as
    nbgrader's JupyterHub docs name them: `formgrade-convlab` (instructors: formgrader, Create
    Assignment, the course folder ~/convlab) and `nbgrader-convlab` (students: Assignments and
    Validate only). Nobody else may log in. The roster comes from the environment (or edit the two
    lists below):

        CONVLAB_INSTRUCTORS=alice            comma-separated OS user names
        CONVLAB_STUDENTS=bob,carol

What the hub does at start (it runs as root)
    * creates the exchange CONVLAB_EXCHANGE (default /srv/nbgrader/exchange, mode 1777) and
      <exchange>/convlab owned by the first instructor, where nbgrader's release/collect work;
    * before each server starts, gives instructors ~/convlab/nbgrader_config.py (the course: source
      notebooks from solutions/, gradebook ~/convlab/gradebook.db that formgrader shows).

Everything else a server needs is a Jupyter config folder chosen by group (JUPYTER_CONFIG_PATH):
hub/jupyter/student or hub/jupyter/instructor, each with its nbgrader_config.py, the nbgrader
server extensions it enables and the JupyterLab plugins it disables (the news popup for everyone).

Other settings (all optional; `make hub` and tests/e2e set them):
    CONVLAB_HUB_IP / CONVLAB_HUB_PORT    where the hub listens (127.0.0.1:8000)
    CONVLAB_HUB_STATE                    hub database, cookie secret, proxy pid (/srv/jupyterhub)
    CONVLAB_HUB_INTERNAL_PORT, CONVLAB_PROXY_API_PORT   the hub's and the proxy's private ports
    CONVLAB_HUB_API_TOKEN                a token for an admin service `convlab-admin` (automation)
    CONVLAB_FAKE_DATA                    passed to the servers (offline CIFAR-10 stand-in)
"""
import os
import pwd
import shutil
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (provided by traitlets when it loads this file)

HUB = Path(__file__).resolve().parent
ROOT = HUB.parent
# The users' servers, kernels and grader run from the course's environment: .venv/hub when
# `make hub-deps` had to build one every account can run (see hub/shared_env.py), else .venv.
BIN = ROOT / ".venv" / "hub" / "bin" if (ROOT / ".venv" / "hub" / "bin" / "python").exists() else Path(sys.executable).parent
COURSE_ID = "convlab"
INSTRUCTOR_GROUP = f"formgrade-{COURSE_ID}"
STUDENT_GROUP = f"nbgrader-{COURSE_ID}"


def _names(var: str) -> list[str]:
    return [n.strip() for n in os.environ.get(var, "").split(",") if n.strip()]


INSTRUCTORS = _names("CONVLAB_INSTRUCTORS")
STUDENTS = _names("CONVLAB_STUDENTS")
EXCHANGE = Path(os.environ.get("CONVLAB_EXCHANGE", "/srv/nbgrader/exchange"))
STATE = Path(os.environ.get("CONVLAB_HUB_STATE", "/srv/jupyterhub"))
STATE.mkdir(parents=True, exist_ok=True, mode=0o700)

# --- network: the public proxy port, and the hub's and proxy's private ports on localhost --------
ip = os.environ.get("CONVLAB_HUB_IP", "127.0.0.1")
c.JupyterHub.bind_url = f"http://{ip}:{os.environ.get('CONVLAB_HUB_PORT', '8000')}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("CONVLAB_HUB_INTERNAL_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('CONVLAB_PROXY_API_PORT', '8001')}"
_proxy = shutil.which("configurable-http-proxy", path=f"{ROOT / '.venv' / 'node' / 'bin'}:{os.environ.get('PATH', '')}")
if _proxy:
    c.ConfigurableHTTPProxy.command = [_proxy]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")

# --- who may log in: real OS accounts (PAM), only the class ---------------------------------------
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False                 # no systemd-logind in containers
c.Authenticator.allowed_users = set(INSTRUCTORS + STUDENTS)
c.Authenticator.admin_users = set()                      # instructors need no hub admin rights
c.JupyterHub.load_groups = {
    INSTRUCTOR_GROUP: {"users": INSTRUCTORS},
    STUDENT_GROUP: {"users": STUDENTS},
}
# The roster comes from the environment (see the top of this file).
c.JupyterHub.load_roles = [
    # nbgrader's JupyterHubAuthPlugin, in each user's server, asks the hub for the user's groups
    # (which courses they take or teach): the server token may read its own user's name and groups.
    {"name": "server", "scopes": ["users:activity!user", "access:servers!server",
                                  "read:users:name!user", "read:users:groups!user"]},
]
_api_token = os.environ.get("CONVLAB_HUB_API_TOKEN")
if _api_token:
    c.JupyterHub.services = [{"name": "convlab-admin", "api_token": _api_token}]
    c.JupyterHub.load_roles.append({"name": "convlab-admin", "services": ["convlab-admin"],
                                    "scopes": ["admin:users", "admin:servers", "access:servers",
                                               "tokens", "read:groups", "admin:groups"]})

# --- the users' servers: JupyterLab from the course's environment, as the user --------------------
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 120
c.Spawner.environment = {
    "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",      # nbgrader runs `alembic` from PATH
    "JUPYTER_PREFER_ENV_PATH": "1",
    "CONVLAB_EXCHANGE": str(EXCHANGE),
    "CONVLAB_ROOT": str(ROOT),
    "CONVLAB_FAKE_DATA": os.environ.get("CONVLAB_FAKE_DATA", ""),
}
c.JupyterHub.cleanup_servers = True


def _groups(spawner) -> set[str]:
    return {g.name for g in spawner.user.groups}


def _instructor_course(home: Path, uid: int, gid: int) -> None:
    """~/convlab with an nbgrader_config.py that loads the course's instructor config."""
    course = home / COURSE_ID
    if not course.exists():
        course.mkdir(mode=0o700)
        os.chown(course, uid, gid)
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(
            "# The convlab course as this instructor teaches it (written by hub/jupyterhub_config.py).\n"
            "c = get_config()\n"
            f"load_subconfig('nbgrader_config.py', path={str(HUB / 'jupyter' / 'instructor')!r})\n")
        os.chown(config, uid, gid)


def pre_spawn_hook(spawner) -> None:
    groups = _groups(spawner)
    pw = pwd.getpwnam(spawner.user.name)
    if INSTRUCTOR_GROUP in groups:
        role = "instructor"
        _instructor_course(Path(pw.pw_dir), pw.pw_uid, pw.pw_gid)
    elif STUDENT_GROUP in groups:
        role = "student"
    else:
        raise RuntimeError(f"{spawner.user.name} is neither an instructor nor a student of {COURSE_ID}")
    spawner.environment["JUPYTER_CONFIG_PATH"] = str(HUB / "jupyter" / role)


c.Spawner.pre_spawn_hook = pre_spawn_hook


def _exchange() -> None:
    """The exchange root and the course folder in it, owned by the (first) instructor. nbgrader
    insists on a world-writable root (0777); the sticky bit (like /tmp) keeps anyone from removing
    or renaming another's folder there."""
    EXCHANGE.mkdir(parents=True, exist_ok=True)
    EXCHANGE.chmod(0o1777)
    course = EXCHANGE / COURSE_ID
    if INSTRUCTORS and not course.exists():
        pw = pwd.getpwnam(INSTRUCTORS[0])
        course.mkdir()
        os.chown(course, pw.pw_uid, pw.pw_gid)
        course.chmod(0o755)


if os.geteuid() == 0:
    _exchange()

"""JupyterHub for one convlab class on one machine: `jupyterhub -f hub/jupyterhub_config.py` (as root).

Who is who
    Real OS accounts log in with their own password (PAM), so every notebook server runs as its
    student's uid and nbgrader's exchange knows who submitted what. Two JupyterHub groups, named as
    nbgrader's JupyterHub docs name them: `formgrade-convlab` (instructors: formgrader, Create
    Assignment, the course folder ~/convlab) and `nbgrader-convlab` (students: Assignments and
    Validate only). Nobody else may log in. The first roster comes from the environment:

        CONVLAB_INSTRUCTORS=alice            comma-separated OS user names
        CONVLAB_STUDENTS=bob,carol

    and is kept in CONVLAB_HUB_STATE/roster.json; from then on `convlab-roster import FILE.csv` and
    `convlab-roster remove ID` (hub/roster.py, as root) change it while the hub runs, through the
    hub's REST API, and the environment is ignored. Every login and every spawn is checked against
    that file, so a removal holds across restarts too.

Restarts stop nobody
    The proxy runs on its own (hub/proxy.py, `convlab-proxy`), started before the hub, and the hub
    leaves users' servers running when it stops (`cleanup_servers = False`): a restarted hub finds
    the proxy and the servers again.

Where it runs from
    Not from the course's clone: `make hub-deps` installs the course into RUNTIME (/opt/convlab, see
    hub/runtime.py), and the hub is started from there, as root:

        /opt/convlab/python/bin/jupyterhub -f /opt/convlab/staff/hub/jupyterhub_config.py

    Students' servers run RUNTIME/python with RUNTIME/jupyter/student and RUNTIME/data, and nothing
    of theirs names RUNTIME/staff (solutions/, the grader, this file), which only the Unix group
    convlab-staff (the instructors) may read.

What the hub does at start (it runs as root)
    * puts exactly the instructors in the group convlab-staff;
    * creates the exchange CONVLAB_EXCHANGE (default /srv/nbgrader/exchange, mode 1777) with
      <exchange>/convlab, and the staff's course folder CONVLAB_COURSE_DIR, both of the group
      convlab-staff (setgid), so that every instructor releases, collects and grades in one
      course with one gradebook (nbgrader's `groupshared`).
    Before each server starts it makes the user's home private (0700, on its real path) and refuses
    a home the user does not own. It writes nothing into a user's home: an instructor's ~/convlab
    is made by their own server (jupyter/instructor/jupyter_server_config.py).

Everything else a server needs is a Jupyter config folder chosen by group (JUPYTER_CONFIG_PATH):
hub/jupyter/student or hub/jupyter/instructor, each with its nbgrader_config.py, the nbgrader
server extensions it enables and the JupyterLab plugins it disables (the news popup for everyone).

Other settings (all optional; `make hub` and tests/e2e set them):
    CONVLAB_HUB_IP / CONVLAB_HUB_PORT    where the hub listens (127.0.0.1:8000)
    CONVLAB_HUB_STATE                    hub database, cookie secret, proxy pid (/srv/jupyterhub)
    CONVLAB_COURSE_DIR                   the staff's shared course folder (/srv/convlab/course): one
                                         gradebook, release/, submitted/, autograded/, feedback/
    CONVLAB_HUB_INTERNAL_PORT, CONVLAB_PROXY_API_PORT   the hub's and the proxy's private ports
    CONVLAB_HUB_API_TOKEN                a token for an admin service `convlab-admin` (automation)
    CONVLAB_SSL_CERT, CONVLAB_SSL_KEY    TLS (PEM files): the proxy serves https (hub/proxy.py)
    CONVLAB_CULL_IDLE, _CULL_EVERY       stop servers idle this many seconds (3600; 0: never), checked
                                         every _CULL_EVERY seconds (jupyterhub-idle-culler)
    CONVLAB_FAKE_DATA                    passed to the servers (offline CIFAR-10 stand-in)
    CONVLAB_STUDENT_MEMORY, _CPUS        each student's memory and CPUs, everything they run (2G, 1;
                                         0: none), a cgroup per user (hub/limits.py)
    CONVLAB_STAFF_MEMORY, _CPUS          the same for instructors (0, 0: they grade)
    CONVLAB_FEEDBACK                     0: no grading at submit time (the service convlab-feedback,
                                         hub/submit_grader.py; on by default)
    CONVLAB_FEEDBACK_DIR                 its folder (beside CONVLAB_COURSE_DIR: .../submit-grading)
    CONVLAB_FEEDBACK_INTERVAL, _BATCH, _WORKERS, _HIDDEN, _PORT, _NICE   a student's jobs this many seconds
                                         apart (30); jobs per batch (16); grader threads (1); `named`
                                         shows that a hidden check failed (default: only counted);
                                         the service's local port (a free one); the grader's nice (10)
"""
import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (provided by traitlets when it loads this file)

HUB = Path(__file__).resolve().parent
ROOT = HUB.parent                      # RUNTIME/staff: the staff's copy of the course
RUNTIME = ROOT.parent
if not (ROOT.name == "staff" and (RUNTIME / "python" / "bin" / "python").exists()):
    raise SystemExit(f"error: start the hub from the installed course, not from {ROOT}: as root, `make hub-deps`, "
                     f"then /opt/convlab/python/bin/jupyterhub -f /opt/convlab/staff/hub/jupyterhub_config.py "
                     f"(see hub/README.md)")
sys.path.insert(0, str(ROOT))
from hub import limits, proxy, roster, runtime  # noqa: E402  (RUNTIME/staff/hub/*.py)

BIN = runtime.python(RUNTIME).parent
COURSE_ID, INSTRUCTOR_GROUP, STUDENT_GROUP = roster.COURSE_ID, roster.INSTRUCTOR_GROUP, roster.STUDENT_GROUP


def _names(var: str) -> list[str]:
    return [n.strip() for n in os.environ.get(var, "").split(",") if n.strip()]


EXCHANGE = Path(os.environ.get("CONVLAB_EXCHANGE", "/srv/nbgrader/exchange"))
COURSE_DIR = Path(os.environ.get("CONVLAB_COURSE_DIR", "/srv/convlab/course"))
STUDENT_LIMITS = limits.parse_limits(os.environ.get("CONVLAB_STUDENT_MEMORY", "2G"), os.environ.get("CONVLAB_STUDENT_CPUS", "1"))
STAFF_LIMITS = limits.parse_limits(os.environ.get("CONVLAB_STAFF_MEMORY", "0"), os.environ.get("CONVLAB_STAFF_CPUS", "0"))
STATE = Path(os.environ.get("CONVLAB_HUB_STATE", "/srv/jupyterhub"))
STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
STATE.chmod(0o700)        # the hub's database and cookie secret: no account but root may read them
_roster = roster.seed(_names("CONVLAB_INSTRUCTORS"), _names("CONVLAB_STUDENTS"), STATE)
INSTRUCTORS = roster.members(_roster, "instructor")
STUDENTS = roster.members(_roster, "student")

# --- network: the proxy (its own process: hub/proxy.py), the hub's private port on localhost ------
_net = proxy.settings()
c.JupyterHub.bind_url = _net.public_url           # https when CONVLAB_SSL_CERT/KEY are set
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = _net.hub_port
c.ConfigurableHTTPProxy.api_url = _net.api_url
c.ConfigurableHTTPProxy.should_start = False       # a restarted hub must not kill the proxy
c.ConfigurableHTTPProxy.auth_token = proxy.secret(STATE / "proxy-token")
c.JupyterHub.cleanup_servers = False               # ... nor stop anybody's server
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")

# --- who may log in: real OS accounts (PAM), only the class ---------------------------------------
c.JupyterHub.authenticator_class = roster.RosterAuthenticator   # PAM, and on the roster file now
c.PAMAuthenticator.open_sessions = False                 # no systemd-logind in containers
c.Authenticator.allowed_users = set(INSTRUCTORS + STUDENTS)
c.Authenticator.admin_users = set()                      # instructors need no hub admin rights
c.JupyterHub.load_groups = {
    INSTRUCTOR_GROUP: {"users": INSTRUCTORS},
    STUDENT_GROUP: {"users": STUDENTS},
}
c.JupyterHub.load_roles = [
    # nbgrader's JupyterHubAuthPlugin, in each user's server, asks the hub for the user's groups
    # (which courses they take or teach): the server token may read its own user's name and groups.
    {"name": "server", "scopes": ["users:activity!user", "access:servers!server",
                                  "read:users:name!user", "read:users:groups!user"]},
]
# convlab-roster's service: its token (root's alone) and where to reach the hub, for hub/roster.py
c.JupyterHub.services = [{"name": roster.SERVICE, "api_token": proxy.secret(STATE / "roster-token")}]
c.JupyterHub.load_roles.append({"name": roster.SERVICE, "services": [roster.SERVICE],
                                "scopes": ["admin:users", "admin:servers", "admin:groups"]})
roster.write_service(STATE, f"{_net.hub_url}/hub/api", proxy.secret(STATE / "roster-token"), COURSE_DIR)
# Idle culling: jupyterhub-idle-culler as a hub-managed service (started and stopped with the hub),
# as the account nobody, with only the scopes its docs list: a server idle for CONVLAB_CULL_IDLE
# seconds (no kernel busy, no request through the proxy) is stopped; the user's files stay.
CULL_IDLE = int(os.environ.get("CONVLAB_CULL_IDLE", "3600"))
if CULL_IDLE > 0:
    c.JupyterHub.services.append({
        "name": "idle-culler", "user": "nobody",
        "command": [str(BIN / "python"), "-m", "jupyterhub_idle_culler", f"--timeout={CULL_IDLE}",
                    f"--cull-every={int(os.environ.get('CONVLAB_CULL_EVERY', str(max(60, min(600, CULL_IDLE // 4)))))}"],
    })
    c.JupyterHub.load_roles.append({"name": "idle-culler", "services": ["idle-culler"],
                                    "scopes": ["list:users", "read:users:activity", "read:servers",
                                               "delete:servers"]})
# Grading at submit time (hub/submit_grader.py): a managed service, as the system account
# convlab-grader (primary group convlab-staff: it reads the inbound entries and the staff copy, not
# the students' homes), grades each new submission in the sandbox with its own --out and scratch
# gradebook in FEEDBACK_DIR, and serves each student their visible results at
# /services/convlab-feedback/ (JupyterHub OAuth; instructors see the queue). CONVLAB_FEEDBACK=0: off.
FEEDBACK = os.environ.get("CONVLAB_FEEDBACK", "1") != "0"


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _feedback_port() -> int:
    """The service's port (CONVLAB_FEEDBACK_PORT, else chosen once and kept in the hub's state
    folder): the same after a hub restart, so the route the proxy keeps (it outlives the hub) still
    leads to the service, instead of to a closed port until the hub updates it."""
    if os.environ.get("CONVLAB_FEEDBACK_PORT"):
        return int(os.environ["CONVLAB_FEEDBACK_PORT"])
    import socket
    kept = STATE / "feedback-port"
    try:
        port = int(kept.read_text())
        with socket.socket() as s:                       # still free (the old service has stopped);
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the service binds it (tornado)
            s.bind(("127.0.0.1", port))
        return port
    except (OSError, ValueError):
        port = _free_port()
        kept.write_text(f"{port}\n")
        return port


FEEDBACK_DIR = Path(os.environ.get("CONVLAB_FEEDBACK_DIR", str(COURSE_DIR.parent / "submit-grading")))
if FEEDBACK:
    c.JupyterHub.services.append({
        "name": "convlab-feedback", "user": "convlab-grader", "display": True, "oauth_no_confirm": True,
        "url": f"http://127.0.0.1:{_feedback_port()}",
        "command": [str(BIN / "python"), "-m", "hub.submit_grader"], "cwd": str(ROOT),
        "oauth_client_allowed_scopes": ["read:users:groups!user"],      # who is an instructor
        "environment": {"PATH": f"{BIN}:/usr/bin:/bin", "CONVLAB_EXCHANGE": str(EXCHANGE),
                        "CONVLAB_FEEDBACK_DIR": str(FEEDBACK_DIR), "PYTHONDONTWRITEBYTECODE": "1",
                        "CONVLAB_FAKE_DATA": os.environ.get("CONVLAB_FAKE_DATA", ""),
                        **{k: v for k, v in os.environ.items() if k.startswith("CONVLAB_FEEDBACK_")}},
    })
    c.JupyterHub.load_roles.append({"name": "convlab-feedback-users", "groups": [INSTRUCTOR_GROUP, STUDENT_GROUP],
                                    "scopes": ["access:services!service=convlab-feedback"]})
_api_token = os.environ.get("CONVLAB_HUB_API_TOKEN")
if _api_token:
    c.JupyterHub.services.append({"name": "convlab-admin", "api_token": _api_token})
    c.JupyterHub.load_roles.append({"name": "convlab-admin", "services": ["convlab-admin"],
                                    "scopes": ["admin:users", "admin:servers", "access:servers",
                                               "tokens", "read:groups", "admin:groups"]})

# --- the users' servers: JupyterLab from the course's environment, as the user --------------------
c.JupyterHub.spawner_class = limits.LimitedSpawner     # LocalProcessSpawner inside a cgroup per user
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 120
c.Spawner.environment = {
    "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",      # nbgrader runs `alembic` from PATH
    "JUPYTER_PREFER_ENV_PATH": "1",
    "CONVLAB_EXCHANGE": str(EXCHANGE),
    "CONVLAB_DATA_DIR": str(RUNTIME / "data"),
    "CONVLAB_FAKE_DATA": os.environ.get("CONVLAB_FAKE_DATA", ""),
}


def _private_home(name: str) -> None:
    """The user's home, on its real path, is theirs and closed to everyone else (0700): classmates
    must not read work in progress, the nbgrader cache or submission_secret.txt. Refuses a home the
    user does not own; never follows a link."""
    pw = pwd.getpwnam(name)
    real = os.path.realpath(pw.pw_dir)
    fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_uid != pw.pw_uid:
            raise RuntimeError(f"{name}'s home {real} belongs to uid {st.st_uid}, not to {name}: fix the account")
        if st.st_mode & 0o077:
            os.fchmod(fd, st.st_mode & 0o7700)
            print(f"convlab hub: made {name}'s home {real} private (was {st.st_mode & 0o777:o})", file=sys.stderr)
    finally:
        os.close(fd)


def pre_spawn_hook(spawner) -> None:
    role = roster.role_of(spawner.user.name, STATE)     # the roster file as it is now, not at start
    if role == "instructor":
        config = HUB / "jupyter" / "instructor"
    elif role == "student":
        config = RUNTIME / "jupyter" / "student"
    else:
        raise RuntimeError(f"{spawner.user.name} is not on the roster of {COURSE_ID}")
    _private_home(spawner.user.name)
    limit = STAFF_LIMITS if config.name == "instructor" else STUDENT_LIMITS
    spawner.convlab_cgroups = limits.prepare(spawner.user.name, limit) if limit else []
    spawner.environment["JUPYTER_CONFIG_PATH"] = str(config)
    if config.name == "instructor":
        spawner.environment["CONVLAB_COURSE_DIR"] = str(COURSE_DIR)
        if FEEDBACK:                      # grade.py reuses what the submit-time grader graded
            spawner.environment["CONVLAB_FEEDBACK_DIR"] = str(FEEDBACK_DIR)


c.Spawner.pre_spawn_hook = pre_spawn_hook
c.Spawner.post_stop_hook = lambda spawner: limits.release(spawner.user.name)


def _shared(folder: Path, mode: int) -> None:
    """`folder` owned by root and the staff group (setgid: what is made inside stays the group's)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, 0, grp.getgrnam(runtime.STAFF_GROUP).gr_gid, follow_symlinks=False)
    folder.chmod(mode)


def _course_folders() -> None:
    """Every instructor and TA teaches one course: the exchange's course folder and the course
    folder (gradebook, submissions, graded notebooks) belong to the group convlab-staff, and
    nbgrader runs `groupshared` for them (instructor config). The exchange root is 1777 as nbgrader
    insists (the sticky bit keeps anyone from removing another's folder there); the course folder
    is closed to everyone else. The course's inbound folder is made here, before nbgrader's
    release would make it 2773: students may add their submissions and neither list (nbgrader's
    choice) nor, with the sticky bit added, remove or rename another's, even by a name they
    guessed or saw."""
    EXCHANGE.mkdir(parents=True, exist_ok=True)
    EXCHANGE.chmod(0o1777)
    _shared(EXCHANGE / COURSE_ID, 0o2775)
    _shared(EXCHANGE / COURSE_ID / "inbound", 0o3773)
    _shared(COURSE_DIR, 0o2770)
    _shared_file(COURSE_DIR / "gradebook.db")
    _shared_file(COURSE_DIR / "nbgrader.log")


def _shared_file(path: Path) -> None:
    """The one gradebook (and nbgrader's log), writable by the whole staff: SQLite makes a new
    database 0644 whatever the umask, so the first instructor's nbgrader would make it theirs
    alone. An empty file is an empty SQLite database (nbgrader adds its tables). Never follows a
    link (the folder is the staff's to write in); leaves anything but a plain file alone."""
    gid = grp.getgrnam(runtime.STAFF_GROUP).gr_gid
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o660)
    except OSError as err:
        print(f"convlab hub: warning: {path}: {err}: the gradebook may not be shared", file=sys.stderr)
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchown(fd, -1, gid)
            os.fchmod(fd, 0o660)
    finally:
        os.close(fd)


def _grading_account() -> None:
    """The system account the submit-time grader runs as (made once), and its work folder
    FEEDBACK_DIR: the account's, group convlab-staff (instructors may read it), closed to others."""
    try:
        pwd.getpwnam("convlab-grader")
    except KeyError:
        subprocess.run(["useradd", "--system", "--gid", runtime.STAFF_GROUP, "--home-dir", "/var/lib/convlab-grader",
                        "--create-home", "--shell", "/usr/sbin/nologin", "convlab-grader"], check=True, capture_output=True)
    pw = pwd.getpwnam("convlab-grader")
    FEEDBACK_DIR.mkdir(parents=True, exist_ok=True)
    os.chown(FEEDBACK_DIR, pw.pw_uid, grp.getgrnam(runtime.STAFF_GROUP).gr_gid, follow_symlinks=False)
    FEEDBACK_DIR.chmod(0o2750)


def _feedback_link(on: bool) -> None:
    """A Help-menu item in everyone's JupyterLab, "Submission results (graded at submit time)",
    opening /services/convlab-feedback/ in a new tab (students: their own results; instructors:
    the queue): a settings override of the users' Python, which JupyterLab reads from
    {sys.prefix}/share/jupyter/lab/settings/overrides.d/ (jupyterlab_server's _get_overrides;
    root's, under RUNTIME). Removed when the service is off."""
    link = BIN.parent / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "convlab-feedback.json"
    if not on:
        link.unlink(missing_ok=True)
        return
    base = c.JupyterHub.get("base_url", "/")
    item = {"command": "help:open", "rank": 0,
            "args": {"url": f"{base.rstrip('/')}/services/convlab-feedback/", "newBrowserTab": True,
                     "text": "Submission results (graded at submit time)"}}
    link.parent.mkdir(parents=True, exist_ok=True)
    link.write_text(json.dumps({"@jupyterlab/mainmenu-extension:plugin": {
        "menus": [{"id": "jp-mainmenu-help", "items": [item, {"type": "separator", "rank": 0}]}]}}, indent=1))


if os.geteuid() == 0:
    runtime.set_staff(INSTRUCTORS)
    runtime.set_students(STUDENTS)       # whose hand-ins are collected (hub/exchange.py)
    _course_folders()
    if FEEDBACK:
        _grading_account()
    _feedback_link(FEEDBACK)

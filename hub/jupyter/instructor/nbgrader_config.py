"""nbgrader for a convlab instructor on the hub: the course folder is ~/convlab, on the hub a link
to the staff's shared course CONVLAB_COURSE_DIR (every instructor and TA: one gradebook).

    (this file is found through JUPYTER_CONFIG_PATH; ~/convlab is made by the instructor's own
    server, jupyter_server_config.py beside this file: nothing is written into a home as root)
    ~/convlab/release/              what `nbgrader generate_assignment` made from solutions/
    ~/convlab/submitted/            what `nbgrader collect` gathered
    ~/convlab/autograded/, grading/ `python hub/grade.py`: python -m grader autograde's output
    ~/convlab/feedback/             feedback pages (no hidden tests), for `nbgrader release_feedback`
    ~/convlab/gradebook.db          the gradebook formgrader shows

The source notebooks are the staff copy's solutions/ (RUNTIME/staff, readable by the group
convlab-staff only; read-only is enough); everything else (code stubs, timeouts) comes from
grader/nbgrader_config.py. `nbgrader collect` keeps only submissions that are what they say
(hub/exchange.py). Formgrader renders graded notebooks with nbconvert's sanitizer on.
"""
import os
import sys

c = get_config()  # noqa: F821

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))  # the staff copy
COURSE = os.path.expanduser("~/convlab")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

load_subconfig("nbgrader_config.py", path=os.path.join(ROOT, "grader"))  # noqa: F821
# The course's own policy, which the staff may edit without root: COURSE/nbgrader_config.py (nbgrader
# reads a config file in the course root anyway; loaded here too so that `python -m grader`, which
# reads this file, applies the same late penalty), e.g.
#     c.LateSubmissionPlugin.penalty_method = "zero"
# What follows (folders, exchange, switched-off commands) cannot be changed from there.
if not os.environ.get("CONVLAB_LOADING_COURSE_CONFIG"):   # (that file may load this one: no loop)
    os.environ["CONVLAB_LOADING_COURSE_CONFIG"] = "1"
    try:
        load_subconfig("nbgrader_config.py", path=COURSE)  # noqa: F821
    finally:
        del os.environ["CONVLAB_LOADING_COURSE_CONFIG"]

c.CourseDirectory.course_id = "convlab"
# Several instructors and TAs, one course: what nbgrader makes in the course and the exchange is
# group-writable (the course folders belong to convlab-staff, setgid; see hub/jupyterhub_config.py).
c.CourseDirectory.groupshared = True
c.CourseDirectory.root = COURSE
c.CourseDirectory.source_directory = os.path.join(ROOT, "solutions")
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(COURSE, "gradebook.db")
# nbgrader's log (formgrader, collect, release, the grading command's nbgrader steps), for the whole
# staff: the hub makes COURSE/nbgrader.log group-writable (hub/jupyterhub_config.py).
if os.path.isdir(COURSE):
    c.NbGrader.logfile = os.path.join(COURSE, "nbgrader.log")
c.Exchange.root = os.environ.get("CONVLAB_EXCHANGE", "/srv/nbgrader/exchange")
if os.environ.get("JUPYTERHUB_API_TOKEN"):
    from nbgrader.auth import JupyterHubAuthPlugin
    c.Authenticator.plugin_class = JupyterHubAuthPlugin
# `nbgrader collect` (and formgrader's Collect): an inbound entry is collected only if it is the
# student's own (owner), its timestamp is the time it was handed in, and it holds plain files only.
c.ExchangeFactory.collect = "hub.exchange.VerifiedCollect"
# Formgrader's pages of graded notebooks: nbconvert's sanitizer on outputs (a second wall; the
# grader already keeps student outputs as text and images, and makes student markdown inert).
c.HTMLExporter.sanitize_html = True

# Two of formgrader's buttons (and the commands behind them) would undo what the course guarantees:
# * "Autograde" / `nbgrader autograde` runs the students' code unsandboxed, as this instructor, with
#   the verdicts decided in the student's own kernel (and, with --force, which formgrader uses,
#   first deletes what hub/grade.py wrote to autograded/);
# * "Generate feedback" / `nbgrader generate_feedback` renders the autograded notebooks, hidden
#   tests included (nbgrader puts them back for grading), for the students to fetch.
# On the hub both refuse before they touch anything: hub/grade.py grades and writes the feedback.
GRADE = os.path.join(ROOT, "hub", "grade.py")
SWITCHED_OFF = {
    "Autograde": "plain `nbgrader autograde` (also formgrader's Autograde button) is switched off: it would "
                 "run the students' code unsandboxed, as you",
    "GenerateFeedback": "plain `nbgrader generate_feedback` (also formgrader's Generate Feedback button) is "
                        "switched off: its pages would show the students the hidden tests",
}


def _switched_off(self, *args, **kwargs):
    from nbgrader.converters.base import NbGraderException
    message = (f"On the convlab hub, {SWITCHED_OFF[type(self).__name__]}. Use the course's sandboxed "
               f"grader instead, in a terminal: convlab-grade ASSIGNMENT ({GRADE}: collect, autograde, feedback "
               "without hidden tests, release; formgrader then shows the scores).")
    self.log.error(message)
    raise NbGraderException(message)


from nbgrader.converters import Autograde, GenerateFeedback  # noqa: E402

Autograde.start = GenerateFeedback.start = _switched_off

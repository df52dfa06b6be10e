"""nbgrader for a convlab instructor on the hub: the course folder is ~/convlab.

    ~/convlab/nbgrader_config.py    loads this file (written by hub/jupyterhub_config.py)
    ~/convlab/release/              what `nbgrader generate_assignment` made from solutions/
    ~/convlab/submitted/            what `nbgrader collect` gathered
    ~/convlab/autograded/, grading/ `python hub/grade.py`: python -m grader autograde's output
    ~/convlab/feedback/             feedback pages (no hidden tests), for `nbgrader release_feedback`
    ~/convlab/gradebook.db          the gradebook formgrader shows

The source notebooks are the repository's solutions/ (read-only for the instructor's account is
enough); everything else (code stubs, timeouts) comes from grader/nbgrader_config.py.
"""
import os

c = get_config()  # noqa: F821

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))  # the repository
COURSE = os.path.expanduser("~/convlab")

load_subconfig("nbgrader_config.py", path=os.path.join(ROOT, "grader"))  # noqa: F821

c.CourseDirectory.course_id = "convlab"
c.CourseDirectory.root = COURSE
c.CourseDirectory.source_directory = os.path.join(ROOT, "solutions")
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(COURSE, "gradebook.db")
c.Exchange.root = os.environ.get("CONVLAB_EXCHANGE", "/srv/nbgrader/exchange")
if os.environ.get("JUPYTERHUB_API_TOKEN"):
    from nbgrader.auth import JupyterHubAuthPlugin
    c.Authenticator.plugin_class = JupyterHubAuthPlugin

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
               f"grader instead, in a terminal: python {GRADE} ASSIGNMENT (collect, autograde, feedback "
               "without hidden tests, release; formgrader then shows the scores).")
    self.log.error(message)
    raise NbGraderException(message)


from nbgrader.converters import Autograde, GenerateFeedback  # noqa: E402

Autograde.start = GenerateFeedback.start = _switched_off

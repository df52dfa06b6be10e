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

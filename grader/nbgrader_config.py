"""nbgrader configuration for the convlab course.

The course root is the repository root (the folder above this file), so nbgrader works the same
whether it is started from the root, from grader/, or by the grading tools (`python -m grader`).

    solutions/<assignment>/<assignment>.ipynb   source notebooks (solutions + hidden tests)
    notebooks/<assignment>/<assignment>.ipynb   student versions (generated, committed)
    grader/submitted|autograded|feedback/       instructor-private working folders (gitignored)
    grader/gradebook.db                         the gradebook (gitignored)
"""
import os

c = get_config()  # noqa: F821  (provided by traitlets when it loads this file)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.course_id = "convlab"
c.CourseDirectory.root = ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = os.path.join("grader", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("grader", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("grader", "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(ROOT, "grader", "gradebook.db")

c.CourseDirectory.assignment_id = ""
# Only the notebook itself is released; stray files (checkpoints, data) are not copied.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.bak"]

# The stub students see in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Executed source notebooks carry run timestamps; the release must not (it has to be reproducible).
c.ClearOutput.remove_metadata_fields = {"collapsed", "scrolled", "execution", "ExecuteTime"}

# Plain `nbgrader autograde` (and its Execute preprocessor) runs a notebook on the course's own
# kernel with this time limit per cell. `python -m grader autograde` does not use it: its limits
# are per notebook and per call of the student's code (grader/limits.py).
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# Executed source notebooks also carry ipywidgets' saved state (notebook metadata "widgets", tens
# of kB for lesson 4's sliders); a student version starts without outputs, so it must not carry it.
from nbgrader.converters.generate_assignment import GenerateAssignment  # noqa: E402
from nbgrader.preprocessors import ClearOutput  # noqa: E402


class ClearOutputAndWidgetState(ClearOutput):
    """nbgrader's ClearOutput, which also drops the notebook's saved widget state."""

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        return super().preprocess(nb, resources)


c.GenerateAssignment.preprocessors = [
    ClearOutputAndWidgetState if p is ClearOutput else p
    for p in GenerateAssignment.class_traits()["preprocessors"].default()
]

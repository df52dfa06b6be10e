"""nbgrader for a convlab student (hub servers and `make lab`): the course id and the exchange.

Students fetch, validate and submit; they never see the gradebook or the source notebooks. On the
hub, the course list comes from the student's JupyterHub groups (`nbgrader-convlab`), as in
nbgrader's JupyterHub docs.

A submission's folder in the exchange's inbound is closed to other students: nbgrader makes it
0777 ("so the instructor can delete later", hidden only by its unlisted name), where anyone who
learns the name could replace or delete the notebook in it. `PrivateSubmit` makes it 0750: the
student and the staff group (the inbound folder's, set-group-id on the hub) read it, nobody else
enters it; the inbound folder's sticky bit keeps it from being renamed or removed by others.
"""
import os

from nbgrader.exchange.default.submit import ExchangeSubmit


class PrivateSubmit(ExchangeSubmit):
    """nbgrader's submit, its inbound folder closed to everyone but the student and the staff."""

    def copy_files(self) -> None:
        super().copy_files()
        os.chmod(os.path.join(self.inbound_path, self.assignment_filename), 0o750)


c = get_config()  # noqa: F821

c.CourseDirectory.course_id = "convlab"
c.Exchange.root = os.environ.get("CONVLAB_EXCHANGE", "/srv/nbgrader/exchange")
c.ExchangeFactory.submit = PrivateSubmit
if os.environ.get("JUPYTERHUB_API_TOKEN"):
    from nbgrader.auth import JupyterHubAuthPlugin
    c.Authenticator.plugin_class = JupyterHubAuthPlugin

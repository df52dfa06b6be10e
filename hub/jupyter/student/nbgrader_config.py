"""nbgrader for a convlab student (hub servers and `make lab`): the course id and the exchange.

Students fetch, validate and submit; they never see the gradebook or the source notebooks. On the
hub, the course list comes from the student's JupyterHub groups (`nbgrader-convlab`), as in
nbgrader's JupyterHub docs.
"""
import os

c = get_config()  # noqa: F821

c.CourseDirectory.course_id = "convlab"
c.Exchange.root = os.environ.get("CONVLAB_EXCHANGE", "/srv/nbgrader/exchange")
if os.environ.get("JUPYTERHUB_API_TOKEN"):
    from nbgrader.auth import JupyterHubAuthPlugin
    c.Authenticator.plugin_class = JupyterHubAuthPlugin

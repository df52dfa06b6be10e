"""nbgrader for a convlab student on Zero to JupyterHub: the exchange is ngshare (no shared disk).
ON PAPER: not exercised by make test (see hub/README.md)."""
from ngshare_exchange import configureExchange
from nbgrader.auth import JupyterHubAuthPlugin

c = get_config()  # noqa: F821
configureExchange(c, "http://proxy-public/services/ngshare")
c.CourseDirectory.course_id = "convlab"
c.Authenticator.plugin_class = JupyterHubAuthPlugin

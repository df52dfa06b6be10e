"""nbgrader for a convlab instructor on Zero to JupyterHub: the course folder ~/convlab (in the
instructor's persistent home), source notebooks from the instructor image's /srv/convlab/source/solutions, the
exchange is ngshare. ON PAPER: not exercised by make test (see hub/README.md)."""
from ngshare_exchange import configureExchange
from nbgrader.auth import JupyterHubAuthPlugin

c = get_config()  # noqa: F821
# The course folders come from /srv/convlab/source/hub/jupyter/instructor/nbgrader_config.py (next on
# JUPYTER_CONFIG_PATH); this file only swaps the exchange.
configureExchange(c, "http://proxy-public/services/ngshare")
c.Authenticator.plugin_class = JupyterHubAuthPlugin

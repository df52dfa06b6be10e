"""nbgrader for a convlab instructor on Zero to JupyterHub: the course folder ~/convlab (in the
instructor's persistent home), source notebooks from the instructor image's /srv/convlab/source/solutions, the
exchange is ngshare. Run here against a real ngshare and hub: tests/hub/test_ngshare_exchange.py."""
from ngshare_exchange import ExchangeReleaseAssignment, configureExchange
from nbgrader.auth import JupyterHubAuthPlugin


class CheckedRelease(ExchangeReleaseAssignment):
    """ngshare_exchange's release_assignment, failing unless ngshare then lists the assignment:
    ngshare_exchange 0.5.3 only logs a refused or unreachable release (and skips it when it cannot
    list the course's assignments), so `nbgrader release_assignment` and formgrader said released."""

    def copy_files(self):
        super().copy_files()
        listed = self.ngshare_api_get(f"/assignments/{self.coursedir.course_id}")
        if listed is None or self.coursedir.assignment_id not in listed["assignments"]:
            self.fail(f"Not released: the course's exchange (ngshare) does not list "
                      f"{self.coursedir.assignment_id} (see above).")


c = get_config()  # noqa: F821
# The course folders come from /srv/convlab/source/hub/jupyter/instructor/nbgrader_config.py (next on
# JUPYTER_CONFIG_PATH); this file only swaps the exchange.
configureExchange(c, "http://proxy-public/services/ngshare")
c.ExchangeFactory.release_assignment = CheckedRelease
c.Authenticator.plugin_class = JupyterHubAuthPlugin

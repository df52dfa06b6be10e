"""nbgrader for a convlab student on Zero to JupyterHub: the exchange is ngshare (no shared disk).
Run here against a real ngshare and hub: tests/hub/test_ngshare_exchange.py (see hub/README.md)."""
from ngshare_exchange import ExchangeSubmit, configureExchange
from nbgrader.auth import JupyterHubAuthPlugin


class CheckedSubmit(ExchangeSubmit):
    """ngshare_exchange's submit, failing when ngshare did not take the submission (refused, or not
    reached): ngshare_exchange 0.5.3 only logs "Failed to submit." and returns, so `nbgrader submit`
    exited 0 and the Assignments panel said the assignment was submitted."""

    def copy_files(self):
        super().copy_files()
        if self.timestamp is None:
            self.fail("Not submitted: the course's exchange (ngshare) did not take it (see above).")


c = get_config()  # noqa: F821
configureExchange(c, "http://proxy-public/services/ngshare")
c.ExchangeFactory.submit = CheckedSubmit
c.CourseDirectory.course_id = "convlab"
c.Authenticator.plugin_class = JupyterHubAuthPlugin

"""Running convlab for a class on JupyterHub: see hub/README.md."""

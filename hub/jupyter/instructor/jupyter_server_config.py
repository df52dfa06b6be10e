"""The instructor's server makes the course folder ~/convlab itself, as the instructor (0700):
the hub, running as root, writes nothing into a home (a link planted there would redirect it)."""
import os

os.makedirs(os.path.expanduser("~/convlab"), mode=0o700, exist_ok=True)

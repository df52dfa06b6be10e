"""The instructor's server, as the instructor: files it (and its terminals, nbgrader, the grader)
makes are the staff group's too (umask 002: the course folder is shared by every instructor and TA,
with nbgrader's `groupshared`), and ~/convlab is the course folder: a link to CONVLAB_COURSE_DIR on
the hub (one course, one gradebook for the whole staff), else a folder of one's own. The hub,
running as root, writes nothing into a home (a link planted there would redirect it)."""
import os

os.umask(0o002)   # group-writable; the course folder (2770) keeps others out of it
_course = os.path.expanduser("~/convlab")
_shared = os.environ.get("CONVLAB_COURSE_DIR")
if _shared and not os.path.lexists(_course):
    os.symlink(_shared, _course)
elif _shared and os.path.realpath(_course) != os.path.realpath(_shared):
    print(f"convlab: warning: {_course} is not the staff's shared course {_shared}: formgrader and "
          f"convlab-grade use {_course}; move it aside and restart your server to join the course")
elif not _shared:
    os.makedirs(_course, mode=0o700, exist_ok=True)

"""Every limit the trusted grader enforces, in one place (the code inside the sandboxes keeps its
own copies of the frame and message sizes: it cannot import this; tests/grader/test_layout.py
checks that the two agree).

Per submission (the defaults of `python -m grader autograde`'s options):

>>> NOTEBOOK_TIMEOUT, CALL_TIMEOUT, MEMORY // 2**30
(120.0, 10.0, 2)

What is read from a submission, and what a kernel may send back:

>>> MAX_ENTRIES, MAX_NOTEBOOK_BYTES // 2**20, MAX_MESSAGE // 2**20, MAX_DEPTH
(1000, 20, 8, 64)
"""
from __future__ import annotations

# -- a submission, per run's options (python -m grader autograde --timeout, --call-timeout, --memory-limit)
NOTEBOOK_TIMEOUT = 120.0         # seconds for the whole notebook
CALL_TIMEOUT = 10.0              # seconds per call of the student's code from a test
INTERRUPT_GRACE = 2.0            # after a call's SIGINT, before the student kernel is killed
MEMORY = 2 * 2**30               # bytes of resident memory of a sandbox's process tree

# -- what is read of a submission (grader/integrity.py)
MAX_NOTEBOOK_BYTES = 20 * 2**20  # a larger notebook is invalid, unread beyond this
MAX_ENTRIES = 1000               # files and folders in a submission; more: invalid, unread
EXTRA_FILES_LIMIT = 8 * 2**20    # bytes of the files beside the notebook copied into the kernels

# -- the sandbox (grader/sandbox.py, bubblewrap and rlimits)
TMP_SIZE = 512 * 2**20           # private /tmp (tmpfs) size
FSIZE = 256 * 2**20              # largest file the sandbox may write
NPROC = 128                      # threads + processes of the sandbox's uid
KERNEL_DIR_LIMIT = 16 * 2**20    # the folder shared with the grader may not grow beyond this

# -- what a kernel sends (grader/shell_client.py)
MAX_MESSAGE = 8 * 2**20          # a larger frame ends the kernel (grader/inside/shell.py MAX_FRAME)
MAX_DEPTH = 64                   # a frame nested deeper ends the kernel (the grader's frames: 5)
CELL_OUTPUT_CAP = 100_000        # characters of output kept per cell
NOTEBOOK_OUTPUT_CAP = 500_000    # ... and per notebook
FLOOD_LIMIT = 16 * 2**20         # bytes of output received before the grader stops the kernel

# -- fork servers (grader/forkserver.py)
START_TIMEOUT = 120.0            # the zygote's imports, on a busy machine
FORK_TIMEOUT = 10.0              # a fork answered
RESET_TIMEOUT = 10.0             # a sandbox wiped after a submission

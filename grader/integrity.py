"""Check a submission against the released notebook and put its test cells back, with nbgrader.

Before a submission runs:

0. `refusal` (called by discovery, grader/autograde/) walks the submission's folder without
   following anything: a symbolic link, device, FIFO or socket anywhere in it (the notebook, a
   file beside it, a folder) makes it `invalid` before any of it is read. Submissions are plain
   files: a link would make the grader, which may run as root, read (and copy into the student's
   sandbox) whatever it points to, e.g. the solutions. `plain_files` and `load` are the second
   walls: they open nothing but regular files, with O_NOFOLLOW.
1. `load` reads it; anything that is not a readable notebook (a directory, malformed JSON, an
   invalid nbformat document, a huge file) is `invalid`.
2. `repair` compares every nbgrader cell with the release (notebooks/<a>/<a>.ipynb, the version
   students got): a test or read-only cell that was edited, deleted, duplicated or relabelled, a
   cell whose nbgrader metadata was flipped (a solution cell turned into a test cell, points
   changed, ...), or an unknown grade id is a finding (the submission will be `tampered`). The
   repaired notebook has exactly the release's nbgrader cells: metadata reset, deleted test cells
   re-inserted where they belong, duplicates and unknown ids demoted to plain cells.
3. `sanitize` runs nbgrader's own preprocessors on it (ClearOutput, DeduplicateIds,
   OverwriteKernelspec, OverwriteCells, CheckCellMetadata) against the gradebook, which puts
   back the test cells' full source, hidden tests included, with nbgrader's checksums.
"""
from __future__ import annotations

import ast
import copy
import errno
import json
import os
import re
import stat
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

import jsonschema
import nbformat
from nbgrader import utils as nbutils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.nbgraderformat import common as nbgraderformat_common
from nbgrader.preprocessors import (CheckCellMetadata, ClearOutput, DeduplicateIds, OverwriteCells,
                                    OverwriteKernelspec)
from .limits import MAX_ENTRIES, MAX_NOTEBOOK_BYTES

COMPARED = ("grade", "solution", "locked", "task", "points")
# CPython 3.11's AST constructor is not safe to use from several threads at once ("SystemError: AST
# constructor recursion depth mismatch"); the grader parses cells in its worker threads.
_PARSING = threading.Lock()


class InvalidSubmission(Exception):
    """Not a readable notebook; the message says why."""


# What a submission may not contain (anything but regular files and folders), by file type.
SPECIAL = {stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
           stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
PLAIN_ONLY = "hand in plain files only; nothing of this submission was read"
# Opening a regular file found by lstat: never through a link, never blocking (a FIFO swapped in).
_OPEN_PLAIN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def special(mode: int) -> str | None:
    """What a file of this st_mode (from lstat) is, if it is none of a regular file or a folder."""
    return SPECIAL.get(stat.S_IFMT(mode), None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a plain file")


# MAX_ENTRIES: more files and folders than a course's assignment could need are refused unread
# (walking, hashing and copying a million empty files would hold every grading worker for minutes).


def refusal(folder: Path, name: str) -> str | None:
    """Why the submission in `folder` (called `name` in messages) must not be read: the folder
    itself, or anything under it, is a symbolic link, a hard link (a file with another name, which
    may be a file its owner cannot read: the grader would read it for them), a device, FIFO or
    socket, or cannot be listed; or it holds more than MAX_ENTRIES files and folders. None for a
    folder of plain files and folders. Nothing is followed or opened: lstat and
    os.scandir(follow_symlinks=False) only; entries are named relative to `folder`."""
    try:
        kind = special(os.lstat(folder).st_mode)
    except OSError as err:
        return f"{name} could not be read ({err.strerror}): {PLAIN_ONLY}"
    if kind:
        return f"{name} is {kind}: {PLAIN_ONLY}"
    pending = [(Path(folder), PurePosixPath())]          # folders still to list (depth first)
    seen = 0
    while pending:
        found, count = _refusal_in(*pending.pop(), pending)
        if found:
            return found
        seen += count
        if seen > MAX_ENTRIES:
            return (f"{name} holds more than {MAX_ENTRIES} files and folders: hand in the assignment's "
                    "files only; nothing of this submission was read")
    return None


def _refusal_in(folder: Path, rel: PurePosixPath, pending: list) -> tuple[str | None, int]:
    """The first entry of `folder` (`rel` relative to the submission), in name order, that is
    not a regular file with one name or a folder, described (None if there is none), and the
    number of entries; its subfolders are added to `pending`."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        return f"{rel} could not be listed ({err.strerror}): {PLAIN_ONLY}", 0
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as err:
            return f"{rel / entry.name} could not be read ({err.strerror}): {PLAIN_ONLY}", 0
        kind = special(info.st_mode)
        if kind is None and stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            kind = "a hard link (a file with another name elsewhere)"
        if kind:
            return f"{rel / entry.name} is {kind}: {PLAIN_ONLY}", 0
    pending.extend((Path(e.path), rel / e.name) for e in reversed(entries) if e.is_dir(follow_symlinks=False))
    return None, len(entries)


def plain_files(folder: Path, prune: tuple[str, ...] = ()) -> Iterator[tuple[str, int]]:
    """Every regular file under `folder`, in name order: its path relative to `folder` and a file
    descriptor open for reading (valid until the next one is asked for). Found by lstat and
    opened with O_NOFOLLOW, relative to its folder's descriptor (os.fwalk): no symbolic link is
    followed at any depth; links, devices, FIFOs and sockets are skipped, as are folders named
    in `prune` and files that cannot be opened."""
    for top, dirs, files, dir_fd in os.fwalk(folder, follow_symlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in prune)
        rel = PurePosixPath(os.path.relpath(top, folder))
        for name in sorted(files):
            fd = _open_plain(name, dir_fd)
            if fd is None:
                continue
            try:
                yield str(rel / name), fd
            finally:
                os.close(fd)


def _open_plain(name: str, dir_fd: int) -> int | None:
    """A descriptor of `name` in the folder `dir_fd` if it is a regular file (checked before and
    after opening it), else None."""
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return None
        fd = os.open(name, _OPEN_PLAIN, dir_fd=dir_fd)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def read_plain(path: Path, limit: int) -> bytes:
    """The first `limit` bytes of a regular file, opened without following a link (OSError for a
    link: ELOOP, or for anything else that is not a regular file)."""
    fd = os.open(path, _OPEN_PLAIN)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{Path(path).name} is not a regular file")
        return f.read(limit)


def load(path: Path) -> nbformat.NotebookNode:
    """The submitted notebook, read from a regular file that is not a link (O_NOFOLLOW, one name),
    else InvalidSubmission saying what it is."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except OSError as err:
        raise InvalidSubmission(f"{path.name} could not be read ({err.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidSubmission(f"{path.name} is a directory, not a notebook")
    if special(st.st_mode):
        raise InvalidSubmission(f"{path.name} is {special(st.st_mode)}: {PLAIN_ONLY}")
    if st.st_nlink > 1:
        raise InvalidSubmission(f"{path.name} is a hard link (a file with another name elsewhere): {PLAIN_ONLY}")
    try:
        data = read_plain(path, MAX_NOTEBOOK_BYTES + 1)
    except OSError as err:
        what = "a symbolic link" if err.errno == errno.ELOOP else f"not readable ({err.strerror})"
        raise InvalidSubmission(f"{path.name} is {what}: {PLAIN_ONLY}") from None
    if not data:
        raise InvalidSubmission(f"{path.name} is empty (0 bytes)")
    if len(data) > MAX_NOTEBOOK_BYTES:
        size = max(st.st_size, len(data))
        raise InvalidSubmission(f"{path.name} is {size / 2**20:.0f} MB (limit {MAX_NOTEBOOK_BYTES // 2**20} MB)")
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - every reading failure means "not a notebook"
        raise InvalidSubmission(f"{path.name} is not a valid notebook: {type(err).__name__}: "
                                f"{str(err).splitlines()[0][:300] if str(err) else ''}") from None
    return nb


def _meta(cell) -> dict:
    md = cell.get("metadata", {}).get("nbgrader")
    return md if isinstance(md, dict) else {}


def is_test(cell) -> bool:
    md = _meta(cell)
    return cell.cell_type == "code" and bool(md.get("grade")) and not md.get("solution")


def repair(nb: nbformat.NotebookNode, release: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """The submission with the release's nbgrader cells restored, and what was wrong with it."""
    findings: list[str] = []
    ref = {_meta(c)["grade_id"]: c for c in release.cells if _meta(c).get("grade_id")}
    # nbgrader keeps the LAST cell of a duplicated id (DeduplicateIds); so do we.
    last = {_meta(c)["grade_id"]: n for n, c in enumerate(nb.cells) if _meta(c).get("grade_id")}
    out = [_restored(n, copy.deepcopy(cell), ref, last, findings) for n, cell in enumerate(nb.cells)]
    _reinsert_deleted(out, ref, findings)
    repaired = copy.deepcopy(nb)
    repaired.cells = out
    repaired.metadata = copy.deepcopy(release.metadata)
    return repaired, findings


def _restored(n: int, cell, ref: dict, last: dict, findings: list[str]):
    """Cell n of a submission as graded: an nbgrader cell gets the release's metadata (and its
    source, if locked); an unknown or duplicated id loses its nbgrader metadata."""
    md = _meta(cell)
    gid = md.get("grade_id")
    if not md:
        return cell
    if not gid or gid not in ref or last[gid] != n:
        if gid in ref:
            findings.append(f"cell {n}: duplicate of {gid!r}")
        elif md.get("grade") or md.get("solution") or md.get("locked") or gid:
            findings.append(f"cell {n}: unknown grade id {gid!r} (relabelled or added)")
        cell.metadata.pop("nbgrader", None)
        return cell
    want = ref[gid]
    wmd = _meta(want)
    changed = [k for k in COMPARED if md.get(k) != wmd.get(k)]
    if cell.cell_type != want.cell_type:
        changed.append("cell_type")
    if changed:
        findings.append(f"{gid}: nbgrader metadata changed ({', '.join(changed)})")
    if wmd.get("locked") and cell.source != want.source:
        findings.append(f"{gid}: a read-only/test cell was edited")
    if cell.cell_type != want.cell_type:
        cell = copy.deepcopy(want)
    cell.metadata["nbgrader"] = copy.deepcopy(wmd)
    if wmd.get("locked"):
        cell.source = want.source
    return cell


def _reinsert_deleted(out: list, ref: dict, findings: list[str]) -> None:
    """Put back each deleted test or read-only cell after the release's cell before it."""
    order = list(ref)
    present = {_meta(c).get("grade_id") for c in out if _meta(c)}
    for i, gid in enumerate(order):
        if gid in present:
            continue
        wmd = _meta(ref[gid])
        if not (wmd.get("locked") or wmd.get("grade")):
            continue  # a missing answer cell is not re-inserted (it may be answered elsewhere)
        findings.append(f"{gid}: test/read-only cell deleted (re-inserted)")
        pos = 0
        for prev in reversed(order[:i]):
            idx = [k for k, c in enumerate(out) if _meta(c).get("grade_id") == prev]
            if idx:
                pos = idx[0] + 1
                break
        out.insert(pos, copy.deepcopy(ref[gid]))
        present.add(gid)


def sanitize(nb: nbformat.NotebookNode, assignment: str, student: str, db_url: str,
             release: "ReleaseRecord | None" = None) -> nbformat.NotebookNode:
    """nbgrader's own sanitizing preprocessors, as `nbgrader autograde` runs them. With `release`
    (the gradebook's record of the assignment, read once per run), OverwriteKernelspec and
    OverwriteCells look the cells up there instead of querying the gradebook for each cell (the
    same notebook, a fraction of the CPU; CheckCellMetadata checks its schema once: _SchemaOnce)."""
    resources = {"nbgrader": {"notebook": assignment, "assignment": assignment,
                              "student": student, "db_url": db_url}}
    if release is None:
        pps = (ClearOutput(), DeduplicateIds(), OverwriteKernelspec(), OverwriteCells(), CheckCellMetadata())
    else:
        pps = (ClearOutput(), DeduplicateIds(), _OverwriteKernelspec(release), _OverwriteCells(release),
               CheckCellMetadata())
    for pp in pps:
        nb, resources = pp.preprocess(nb, resources)
    return nb


# What a student's markdown may render to (nbconvert's markdown2html, as formgrader renders it):
# tags and attributes that run nothing, links only to these schemes (or relative), images only
# embedded in the notebook (an attachment, which nbconvert makes a data: URL): an image from an
# address would load while an instructor grades (a tracking pixel that tells its owner who graded
# when, from where; a relative one is a request to the hub's own origin, with the grader's cookies).
_SAFE_TAGS = frozenset("p br hr h1 h2 h3 h4 h5 h6 em strong b i u s del sub sup code pre kbd blockquote "
                       "ul ol li dl dt dd a img table thead tbody tfoot tr th td caption span div".split())
_SAFE_ATTRS = frozenset("href src alt title class id align start colspan rowspan".split())
_SAFE_SCHEMES = frozenset(("http", "https", "mailto"))
_SAFE_IMAGES = ("data:image/png;", "data:image/jpeg;", "data:image/gif;")


class _Unsafe(HTMLParser):
    """Collects what in rendered HTML a browser would run or load: other tags, event handlers and
    style, links to other schemes, images that are not embedded (attribute values as a browser
    reads them: entities decoded, blanks and control characters dropped)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in _SAFE_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name not in _SAFE_ATTRS:
                self.found.append(f"{tag}[{name}]")
            elif name in ("href", "src"):
                url = re.sub(r"[\x00-\x20]", "", value or "").lower()
                scheme = re.match(r"([a-z][a-z0-9+.-]*):", url)
                if name == "src":
                    if not url.startswith(_SAFE_IMAGES):                   # not an attachment, embedded
                        self.found.append(f"src={scheme.group(1)}:" if scheme else "src=(an address)")
                elif scheme and scheme.group(1) not in _SAFE_SCHEMES:
                    self.found.append(f"href={scheme.group(1)}:")

    handle_startendtag = handle_starttag


def _unsafe_markdown(cell) -> list[str]:
    """What the cell renders to, as formgrader renders it (nbconvert's HTMLExporter.markdown2html,
    with the cell's attachments), that could run; a cell nbconvert cannot render (a missing
    attachment would fail formgrader's page) counts too."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
    renderer = IPythonRenderer(escape=False, attachments=dict(cell.get("attachments") or {}))
    try:
        html = MarkdownWithMath(renderer=renderer).render(cell.source)
    except Exception as err:  # noqa: BLE001 - whatever nbconvert refuses, formgrader would too
        return [f"markup nbconvert cannot render ({type(err).__name__})"]
    check = _Unsafe()
    check.feed(html)
    check.close()
    return check.found


def _as_text(source: str, found: list[str]) -> str:
    """A markdown cell shown as text: the student's source in a fence no line of it can close."""
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", source)), default=0))
    held = ", ".join(f"`{f}`" for f in sorted(set(found))[:5])      # code spans: shown, not run
    return (f"*[The grader shows this cell as text: it held {held}, "
            f"which a browser would run or load.]*\n\n{fence}text\n{source}\n{fence}")


def inert_markup(nb: nbformat.NotebookNode, release: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student's own markup made inert before anyone's browser renders the graded notebook
    (formgrader's template renders markdown with no sanitizer): a markdown cell that is not one of
    the release's is rendered as formgrader renders it, and if that gives anything but plain
    markup (a script, an event handler, an iframe, a `javascript:` link ...: `_Unsafe`), the cell
    becomes its own source shown as text, with a note. A raw cell loses the format that would make
    a renderer paste it in as HTML. Outputs are handled by the kernel reader (grader/shell_client.py).
    Returns `nb`."""
    ours = {c.source for c in release.cells if c.cell_type == "markdown"}
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source not in ours:
            found = _unsafe_markdown(cell)
            if found:
                cell.source = _as_text(cell.source, found)
                cell.pop("attachments", None)
        elif cell.cell_type == "raw":
            for key in ("format", "raw_mimetype"):
                cell.metadata.pop(key, None)
    return nb


class ReleaseRecord:
    """What the gradebook holds of one assignment's notebook (nbgrader names it after the
    assignment here): its kernelspec, source cells and graded cells, as plain values that
    answer nbgrader's `find_source_cell` / `find_graded_cell` (MissingEntry when absent); the
    names of its cells of each kind and its number of submissions, to check it (`missing`)."""

    def __init__(self, gb: Gradebook, assignment: str) -> None:
        nb = gb.find_notebook(assignment, assignment)
        self.assignment = assignment
        self.kernelspec = nb.kernelspec       # JSON text (OverwriteKernelspec parses it per notebook)
        self.source = {c.name: SimpleNamespace(name=c.name, cell_type=c.cell_type, locked=c.locked,
                                               checksum=c.checksum, source=c.source) for c in nb.source_cells}
        self.graded = {c.name: SimpleNamespace(name=c.name, max_score=c.max_score)
                       for c in [*nb.task_cells, *nb.grade_cells]}
        self.names = {"grade": {c.name for c in nb.grade_cells}, "solution": {c.name for c in nb.solution_cells},
                      "task": {c.name for c in nb.task_cells}, "source": set(self.source)}
        self.submissions = nb.num_submissions or 0

    def missing(self, source: nbformat.NotebookNode) -> list[str]:
        """The cells nbgrader generate_assignment records of the `source` notebook (its grade,
        solution and task cells, and as source cells those and the locked ones: nbgrader's
        SaveCells) that this record lacks, as "<kind> cell <grade id>"; empty when it has them all.
        nbgrader commits the record cell by cell: a run killed while it wrote leaves a part."""
        kinds = {"grade": nbutils.is_grade, "solution": nbutils.is_solution, "task": nbutils.is_task,
                 "source": lambda c: (nbutils.is_grade(c) or nbutils.is_solution(c) or nbutils.is_locked(c)
                                      or nbutils.is_task(c))}
        return [f"{kind} cell {cell.metadata['nbgrader']['grade_id']}" for kind, wanted in kinds.items()
                for cell in source.cells
                if wanted(cell) and cell.metadata["nbgrader"]["grade_id"] not in self.names[kind]]

    @classmethod
    def read(cls, db_url: str, assignment: str) -> "ReleaseRecord":
        with Gradebook(db_url) as gb:
            return cls(gb, assignment)

    def _find(self, table: dict, name: str, notebook: str, assignment: str):
        if (notebook, assignment) != (self.assignment, self.assignment) or name not in table:
            raise MissingEntry()
        return table[name]

    def find_source_cell(self, name: str, notebook: str, assignment: str):
        return self._find(self.source, name, notebook, assignment)

    def find_graded_cell(self, name: str, notebook: str, assignment: str):
        return self._find(self.graded, name, notebook, assignment)


class _OverwriteKernelspec(OverwriteKernelspec):
    def __init__(self, release: ReleaseRecord) -> None:
        super().__init__()
        self.release = release

    def preprocess(self, nb, resources):
        kernelspec = json.loads(self.release.kernelspec) if self.release.kernelspec is not None else None
        if kernelspec:
            nb.metadata["kernelspec"] = kernelspec
        return nb, resources


class _OverwriteCells(OverwriteCells):
    """nbgrader's OverwriteCells (its preprocess_cell, unchanged) on the release's record."""

    def __init__(self, release: ReleaseRecord) -> None:
        super().__init__()
        self.release = release

    def preprocess(self, nb, resources):
        self.notebook_id = resources["nbgrader"]["notebook"]
        self.assignment_id = resources["nbgrader"]["assignment"]
        self.gradebook = self.release          # what OverwriteCells.preprocess opens, then:
        return super(OverwriteCells, self).preprocess(nb, resources)


class _SchemaOnce:
    """`jsonschema` as nbgrader's metadata validator sees it (nbgrader.nbgraderformat.common):
    `validate` is jsonschema.validate (the same best-matching error), but checks each distinct
    schema once instead of on every call (~4 ms per cell, most of sanitizing a notebook)."""

    def __init__(self) -> None:
        self._validators: dict = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(jsonschema, name)

    def validate(self, instance, schema) -> None:
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
                validator = self._validators[key] = cls(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            raise error


nbgraderformat_common.jsonschema = _SchemaOnce()


def parse_cell(source: str) -> ast.Module | None:
    """The syntax tree of a code cell (IPython's %magics and !shell lines left out), or None when it
    cannot be parsed (invalid, or nested too deeply for the parser). Safe from any thread."""
    src = "\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!")))
    with _PARSING:
        try:
            return ast.parse(src)
        except (SyntaxError, ValueError, RecursionError, MemoryError, SystemError):
            return None


def notebook_imports(nb: nbformat.NotebookNode) -> dict[str, tuple[str, str | None]]:
    """Names the (source) notebook binds by import: alias -> (module, attribute or None)."""
    names: dict[str, tuple[str, str | None]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = parse_cell(cell.source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        names[a.asname] = (a.name, None)
                    else:
                        top = a.name.split(".")[0]
                        names[top] = (top, None)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    if a.name != "*":
                        names[a.asname or a.name] = (node.module, a.name)
    return names

"""grader/shell_client.py: what a display or result frame becomes in the graded notebook (no kernel
needed). Only text/plain and PNG/JPEG images are kept: formgrader and nbconvert render the
graded notebook in the instructor's browser, so no HTML, JavaScript, SVG, Markdown, LaTeX,
widget or unknown type may cross; what is dropped is named in a note. The caps still hold."""
from __future__ import annotations

import json

import pytest

from grader.shell_client import CELL_OUTPUT_CAP, NOT_KEPT, TRUNCATED, OutputBudget, Shell, _output

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
ACTIVE = {
    "text/html": '<img src=x onerror="document.title=1">',
    "application/javascript": "document.title=2",
    "image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg"><script>document.title=3</script></svg>',
    "text/markdown": '<img src=x onerror="document.title=4">',
    "text/latex": r"$\href{javascript:document.title=5}{x}$",
    "application/vnd.jupyter.widget-view+json": {"model_id": "m", "version_major": 2, "version_minor": 0},
    "application/vnd.plotly.v1+json": {"data": []},
    "application/x-unknown": "<script>document.title=6</script>",
}


def _display(data: dict, metadata: dict | None = None, mtype: str = "display_data"):
    content = {"data": data, "metadata": metadata or {}}
    if mtype == "execute_result":
        content["execution_count"] = 4
    return _output(mtype, content)


@pytest.mark.parametrize("mime", list(ACTIVE))
@pytest.mark.parametrize("mtype", ["display_data", "execute_result"])
def test_active_types_are_dropped_text_is_kept(mime, mtype):
    out = _display({mime: ACTIVE[mime], "text/plain": "the text"}, {mime: {"isolated": True}}, mtype)
    assert out.output_type == mtype and dict(out.data) == {"text/plain": "the text"} and out.metadata == {}
    if mtype == "execute_result":
        assert out.execution_count == 4


def test_without_text_a_note_names_what_was_dropped():
    out = _display({"text/html": ACTIVE["text/html"], "application/javascript": "x"})
    assert dict(out.data) == {"text/plain": NOT_KEPT.format(types="text/html, application/javascript")}
    assert out.data["text/plain"] == ("[text/html, application/javascript output not kept: "
                                      "graded notebooks keep text and images only]")


def test_the_note_names_a_few_types_shortened():
    out = _display({f"application/x-{i}-" + "y" * 200: "z" for i in range(7)})
    note = out.data["text/plain"]
    assert note.count("application/x-") == 4 and "3 more" in note and len(note) < 400


def test_images_are_kept_with_their_size_only():
    """Check that a PNG and a JPEG (base64) are kept, with a numeric width and height and nothing
    else of their metadata (a string width would become attributes of nbconvert's <img> tag, a
    `filenames` entry its src)."""
    metadata = {"image/png": {"width": "1 onerror=document.title=7", "height": 20, "unconfined": True},
                "image/jpeg": {"width": 30.5, "height": -1}, "filenames": {"image/png": "/etc/shadow"}}
    out = _display({"image/png": PNG + "\n", "image/jpeg": PNG, "text/plain": "<Figure>"}, metadata)
    assert dict(out.data) == {"image/png": PNG + "\n", "image/jpeg": PNG, "text/plain": "<Figure>"}
    assert out.metadata == {"image/png": {"height": 20}, "image/jpeg": {"width": 30.5}}


@pytest.mark.parametrize("bad", ['x" onerror="document.title=8', {"b64": PNG}, ["iVBOR"], PNG + "<", 5])
def test_image_data_must_be_base64_text(bad):
    out = _display({"image/png": bad})
    assert dict(out.data) == {"text/plain": NOT_KEPT.format(types="image/png")}


def test_plain_text_must_be_text():
    assert dict(_display({"text/plain": ["a", "b"]}).data) == {"text/plain": "ab"}
    assert dict(_display({"text/plain": {"x": 1}}).data) == {"text/plain": NOT_KEPT.format(types="text/plain")}


def test_streams_and_errors_are_unchanged():
    assert _output("stream", {"name": "stdout", "text": "<script>x</script>"}).text == "<script>x</script>"
    err = _output("error", {"ename": "E", "evalue": "<b>", "traceback": ["t"]})
    assert (err.ename, err.evalue, err.traceback) == ("E", "<b>", ["t"])


def _collect(frames: list[dict], budget: OutputBudget | None = None) -> list:
    shell, outputs, kept = Shell(process=None, listener=None), [], [0]
    for msg_type, content in frames:
        shell._collect({"msg_type": msg_type, "content": content}, outputs, kept, budget or OutputBudget())
    return outputs


def test_dropped_data_does_not_use_the_cells_output_cap():
    """Check that what is dropped does not count against the cell's cap (a page of HTML does not
    push out the text after it), while what is kept does (a large image is cut as before)."""
    html = {"data": {"text/html": "<p>" * CELL_OUTPUT_CAP, "text/plain": "page"}, "metadata": {}}
    outputs = _collect([("display_data", html), ("stream", {"name": "stdout", "text": "after\n"})])
    assert [dict(o.data) if "data" in o else o.text for o in outputs] == [{"text/plain": "page"}, "after\n"]
    image = {"data": {"image/png": "A" * (2 * CELL_OUTPUT_CAP), "text/plain": "big"}, "metadata": {}}
    [cut] = _collect([("display_data", image)])
    assert cut.output_type == "stream" and cut.text == "big" + TRUNCATED


def test_kept_outputs_are_json_without_active_content():
    frames = [("display_data", {"data": {**ACTIVE, "image/png": PNG}, "metadata": {}}),
              ("execute_result", {"data": ACTIVE, "metadata": {}, "execution_count": 1})]
    text = json.dumps(_collect(frames))
    assert "onerror" not in text and "<script" not in text and "document.title" not in text
    assert PNG in text

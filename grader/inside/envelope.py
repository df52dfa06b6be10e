"""The envelope of the examiner's requests and the student kernel's answers: ids, success, errors,
and who said what. `wire` defines the values inside; this module the frames around them.

A request goes from the examiner (inside its sandbox) through the grader to the student's kernel,
and its answer comes back the same way. Three parties touch it, each with its own function here:

* the examiner makes a request (`request`: a fresh random id) and reads what comes back
  (`opened`): either the grader speaking for itself (`{"from": "grader", "message"}`: a time
  limit, a dead kernel) or the student kernel's answer, relayed untouched
  (`{"from": "student", "raw"}`), which must carry the request's id and say whether it worked;
* the student's agent answers (`answer` / `failure`): the request's id echoed, `ok`, and for a
  failure the exception as data (its class name, its builtin bases, its message);
* the grader (trusted, grader/grading.py) only wraps: `from_student` / `from_grader`.

The student's process can forge any answer; what it cannot do is make the grader's own words
look like its own or the other way round, nor answer a request it was not asked (the id).

>>> try:
...     opened(from_grader("the call ran out of time"), {"id": "x"}, "corr2d(X, K)")
... except Refused as err:
...     print(err)
corr2d(X, K): the call ran out of time
>>> req = request({"op": "describe", "names": ["corr2d"]})
>>> raw = answer(req, {"value": 1}, dumps=__import__("json").dumps)
>>> opened(from_student(raw), req, "the names", loads=__import__("json").loads)["value"]
1
"""
from __future__ import annotations

import json
import secrets

class Refused(Exception):
    """The answer cannot be used: the grader said why, it is not data, or it answers another
    request. The examiner turns it into a StudentCodeError with the same message."""


class Failed(Exception):
    """The student's code raised: `.answer` holds the exception as data (error, bases, message)."""

    def __init__(self, answer: dict) -> None:
        super().__init__(answer.get("message", ""))
        self.answer = answer


def request(fields: dict) -> dict:
    """`fields` (an op and its arguments) with a fresh random id (the examiner's side)."""
    fields["id"] = secrets.token_hex(8)
    return fields


def answer(req: dict, fields: dict, dumps) -> str:
    """The agent's answer to `req` (its id echoed, ok), as text by `dumps`."""
    return dumps({**fields, "id": req.get("id"), "ok": True})


def exception(err: BaseException, is_wire_error=lambda err: False) -> dict:
    """An exception as data: its class name, the builtin classes it derives from (none for the
    wire's own refusal) and at most 4,000 characters of its message."""
    bases = [] if is_wire_error(err) else [c.__name__ for c in type(err).__mro__ if c.__module__ == "builtins"]
    return {"error": type(err).__name__, "bases": bases, "message": str(err)[:4000]}


def failure(req: dict, err: BaseException, dumps, is_wire_error=lambda err: False) -> str:
    """The agent's answer to `req` when its code raised `err` (the exception as data)."""
    return dumps({"id": req.get("id"), "ok": False, **exception(err, is_wire_error)})


def from_student(raw: str) -> str:
    """The grader relays the student kernel's answer untouched."""
    return json.dumps({"from": "student", "raw": raw})


def from_grader(message: str) -> str:
    """The grader speaks for itself (a time limit, a dead kernel): never mistaken for an answer."""
    return json.dumps({"from": "grader", "message": str(message)})


def opened(text: str, req: dict, what: str, loads=json.loads) -> dict:
    """The answer to `req` inside what the grader relayed (`loads` decodes the student's text,
    strictly). Refused when the grader spoke, the text is not data, or it answers another
    request; Failed when the student's code raised."""
    outer = json.loads(text)
    if outer.get("from") == "grader":
        raise Refused(f"{what}: {outer.get('message', 'no answer')}")
    try:
        found = loads(outer.get("raw"))
    except Exception as err:  # noqa: BLE001 - whatever `loads` refuses (the wire's WireError)
        raise Refused(f"{what} did not answer with data the grader accepts: {err}") from None
    if not isinstance(found, dict) or found.get("id") != req["id"]:
        raise Refused(f"the student's kernel answered another request than {what} "
                      "(its answer does not carry this call's id)")
    if found.get("ok") is not True:
        raise Failed(found)
    return found


__all__ = ["Refused", "Failed", "request", "answer", "exception", "failure", "from_student", "from_grader", "opened"]

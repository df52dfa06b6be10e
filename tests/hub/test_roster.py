"""hub/roster.py without a hub: reading an nbgrader-format roster (every bad line named, nothing
returned), the roster file the hub checks at each login, and who may run the command."""
from __future__ import annotations

import os
import stat

import pytest

from hub import roster


def test_a_roster_in_nbgraders_format_is_read_with_roles():
    people = roster.parse_csv("\ufeffid,first_name,last_name,email,role\n"
                              "ada,Ada,Lovelace,ada@example.org,\n"
                              "\n"
                              "grace , Grace,Hopper,,TA\n"
                              "alan,,Turing,alan@example.org,Instructor\n".encode())
    assert [(p.id, p.first_name, p.last_name, p.email, p.role, p.line) for p in people] == [
        ("ada", "Ada", "Lovelace", "ada@example.org", "student", 2),
        ("grace", "Grace", "Hopper", None, "instructor", 4),
        ("alan", None, "Turing", "alan@example.org", "instructor", 5)]
    plain = roster.parse_csv(b"email,last_name,first_name,id\nx@y.org,B,A,bob\n")   # any order, no role
    assert (plain[0].id, plain[0].first_name, plain[0].role) == ("bob", "A", "student")


@pytest.mark.parametrize("text, message", [
    (b"", "line 1: no header"),
    (b"id,first_name,email\nbob,B,\n", "line 1: the header lacks last_name"),
    (b"id,first_name,last_name,email,group\n", "unknown column(s) group"),
    (b"id,id,first_name,last_name,email\n", "repeats id"),
    (b"id,first_name,last_name,email\n", "no one to import"),
    (b"id,first_name,last_name,email\nbob,B\n", "line 2: 2 field(s), the header has 4"),
    (b"id,first_name,last_name,email\nBob Smith,B,S,\n", "line 2: id 'Bob Smith' is not a valid account name"),
    (b"id,first_name,last_name,email\nbob,B,S,bob-at-home\n", "line 2: email 'bob-at-home' is not an address"),
    (b"id,first_name,last_name,email,role\nbob,B,S,,admin\n", "line 2: role 'admin' is not one of"),
    (b"id,first_name,last_name,email\nbob,B,S,\n\nbob,B,T,\n", "line 4: id 'bob' already on line 2"),
    (b"id,first_name,last_name,email\nroot,R,R,\n", "line 2: id 'root' is a system account"),
    (b"id,first_name,last_name,email\nbob,B\xe9,S,\n", "line 2: not UTF-8 text"),
])
def test_a_bad_roster_names_the_line_and_what_is_wrong(text, message):
    with pytest.raises(roster.RosterError) as err:
        roster.parse_csv(text, "class.csv")
    assert message in str(err.value)
    assert str(err.value).startswith("class.csv")


def test_every_bad_line_is_named_at_once():
    with pytest.raises(roster.RosterError) as err:
        roster.parse_csv(b"id,first_name,last_name,email\nok,A,B,\nBAD,A,B,\nfine,A,B,no\n", "r.csv")
    assert str(err.value).splitlines() == [
        "r.csv line 3: id 'BAD' is not a valid account name (lower-case letters, digits, _ and -, "
        "starting with a letter or _, at most 32)",
        "r.csv line 4: email 'no' is not an address"]


def test_the_roster_file_is_seeded_once_then_kept(tmp_path):
    data = roster.seed(["ines"], ["sam", "tom"], tmp_path)
    assert data["users"] == {"ines": "instructor", "sam": "student", "tom": "student"}
    assert stat.S_IMODE((tmp_path / "roster.json").stat().st_mode) == 0o600
    data["users"].pop("tom")
    roster.write(data, tmp_path)
    again = roster.seed(["ines"], ["sam", "tom"], tmp_path)   # a restart with the old environment
    assert roster.role_of("tom", tmp_path) is None and "tom" not in again["users"]
    assert roster.role_of("ines", tmp_path) == "instructor" and roster.role_of("sam", tmp_path) == "student"
    assert roster.members(again, "student") == ["sam"]


def test_the_login_check_reads_the_roster_file_as_it_is_now(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLAB_HUB_STATE", str(tmp_path))
    roster.seed([], ["sam"], tmp_path)
    auth = roster.RosterAuthenticator()
    assert auth.check_allowed("sam") and not auth.check_allowed("eve")
    roster.write({"users": {}, "removed": ["sam"]}, tmp_path)
    assert not auth.check_allowed("sam")


def _as_nobody(fn) -> str:
    """fn() in a child process as the account nobody (when run as root) or as this account; what it
    raised, as text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            fn()
            msg = "no error"
        except BaseException as err:  # noqa: BLE001  (reported to the parent)
            msg = f"{type(err).__name__}: {err}"
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def test_only_root_may_change_the_roster(tmp_path):
    people = roster.parse_csv(b"id,first_name,last_name,email\nbob,B,S,\n")
    assert "only root may change the roster" in _as_nobody(lambda: roster.import_people(people, tmp_path))
    roster.seed([], ["bob"], tmp_path)
    assert "only root may change the roster" in _as_nobody(lambda: roster.remove_people(["bob"], tmp_path))
    assert roster.role_of("bob", tmp_path) == "student"


def test_without_the_hubs_service_file_nothing_is_done(tmp_path):
    with pytest.raises(roster.RosterError, match="roster-service.json is missing"):
        roster.Hub(tmp_path)

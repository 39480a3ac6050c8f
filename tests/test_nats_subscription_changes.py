"""Deleting and resetting durable names on a real nats-server: an idle name is deleted and a later
subscribe starts from then; a held name is refused unless forced; forced, the holder is told, and
goes on as it then finds the name; a reset starts at its id's chunk (that chunk's alerts up to
the id come again, nothing after it is skipped), or at the first chunk stored at a time; the CLI."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from notipipe import describe_target
from notipipe._errors import StorageError
from notipipe._storage.nats.subscribers import list_subscriptions
from tests._holders import delivered_ids, holder_process, stop_holder
from tests._pg_rows import Seen
from tests._processes import wait_until
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="waits on child processes and the DatabaseConnection singleton"),
]

#: The module whose ``subscriber`` program holds a durable name in another process.
CHILDREN = "tests._nats_durable_children"

#: Enough for a takeover or a consumer made again: the pin's timeout, an acknowledgement's wait.
TAKEOVER = 60.0


def _chunk(impl: Impl, db: Any, tag: str, n: int) -> list[int]:
    """``n`` alerts saved as one chunk (bodies ``tag i``); their ids."""
    db.save_many([impl.SMSMessage(body=f"{tag} {i}") for i in range(n)])
    db.flush()
    return [m.id for m in db.last(n)]


def _delivered_at_least(out: Path, n: int, timeout: float = TAKEOVER) -> list[int]:
    got: list[int] = []

    def enough() -> bool:  # another process writes the file: polled, with a deadline
        got[:] = delivered_ids(out)
        return len(got) >= n

    wait_until(enough, timeout, interval=0.05)
    return got


def _holder_of(url: str, name: str) -> str | None:
    return next((s.holder for s in list_subscriptions(url) if s.name == name), None)


def _names(url: str) -> list[str]:
    return [s.name for s in list_subscriptions(url)]


def _held_by(url: str, name: str, proc: subprocess.Popen[str]) -> bool:
    """Whether ``proc`` holds ``name`` (a holder is pinned once a chunk came to it)."""
    return _holder_of(url, name) == f"{proc.pid}@{os.uname().nodename}"


def test_an_idle_name_deleted_is_gone_and_a_later_subscribe_starts_from_then(
    impl: Impl, nats_url: str
) -> None:
    db = impl.DatabaseConnection(nats_url)
    seen = Seen()
    assert db.subscribe(seen, durable_name="old dashboard")
    first = _chunk(impl, db, "first", 3)
    assert seen.wait_for(first, TAKEOVER)
    assert db.unsubscribe(seen)
    backlog = _chunk(impl, db, "backlog", 2)
    assert db.delete_subscription("old dashboard") is True
    assert _names(nats_url) == []
    assert db.delete_subscription("old dashboard") is False
    assert describe_target(nats_url).delete_subscription("never made") is False
    again = Seen()
    assert db.subscribe(again, durable_name="old dashboard")
    after = _chunk(impl, db, "after", 2)
    assert again.wait_for(after, TAKEOVER)
    assert db.unsubscribe(again)
    assert again.ids() == after, f"the deleted name's backlog {backlog} came to the new one"


def test_a_name_another_process_holds_is_neither_deleted_nor_reset(
    impl: Impl, nats_url: str, tmp_path: Path
) -> None:
    db = impl.DatabaseConnection(nats_url)
    out = tmp_path / "out"
    with holder_process(impl, CHILDREN, nats_url, "held", out) as proc:
        ids = _chunk(impl, db, "a", 2)
        assert _delivered_at_least(out, 2) == ids
        assert wait_until(lambda: _held_by(nats_url, "held", proc), TAKEOVER)
        who = f"{proc.pid}@{os.uname().nodename}"
        with pytest.raises(
            StorageError, match=f"cannot delete the durable subscription 'held': {who} holds it"
        ):
            db.delete_subscription("held")
        with pytest.raises(
            StorageError, match=f"cannot reset the durable subscription 'held': {who} holds it"
        ):
            db.reset_subscription("held", to_id=0)
        more = _chunk(impl, db, "b", 2)  # the holder goes on from where it was
        assert _delivered_at_least(out, 4) == ids + more
        stop_holder(proc)


def test_a_forced_delete_takes_the_name_from_its_holder_which_makes_it_again_and_says_so(
    impl: Impl, nats_url: str, tmp_path: Path
) -> None:
    db = impl.DatabaseConnection(nats_url)
    out = tmp_path / "out"
    with holder_process(impl, CHILDREN, nats_url, "forced", out) as proc:
        before = _chunk(impl, db, "before", 2)
        assert _delivered_at_least(out, 2) == before
        assert db.delete_subscription("forced", force=True) is True
        # Told by its next pull, the holder makes the consumer again, delivering from then on.
        assert wait_until(lambda: "forced" in _names(nats_url), TAKEOVER)
        after = _chunk(impl, db, "after", 2)
        # At least once: "before", its acknowledgement racing the delete, may come again.
        assert wait_until(lambda: set(before + after) <= set(delivered_ids(out)), TAKEOVER)
        assert list(dict.fromkeys(delivered_ids(out))) == before + after
        err = stop_holder(proc)
    assert "the consumer forced of stream" in err, err
    assert (
        "was gone (status 409 Consumer Deleted): made again; the durable subscriber 'forced' delivers"
        " the alerts stored from now on" in err
    ), err
    assert "Traceback" not in err


def test_a_reset_to_an_id_starts_at_its_chunk_and_skips_nothing_after(impl: Impl, nats_url: str) -> None:
    db = impl.DatabaseConnection(nats_url)
    seen = Seen()
    assert db.subscribe(seen, durable_name="replay")
    one, two, three = (_chunk(impl, db, tag, 5) for tag in ("one", "two", "three"))
    assert seen.wait_for(one + two + three, TAKEOVER)
    assert db.unsubscribe(seen)
    for to_id, expected in [
        (two[2], two + three),  # inside a chunk: the chunk whole (its first three again)
        (two[-1], three),  # a chunk's last alert: the next chunk
        (0, one + two + three),  # nothing delivered: from the stream's start
    ]:
        assert db.reset_subscription("replay", to_id=to_id) is True
        replayed = Seen()
        assert db.subscribe(replayed, durable_name="replay")
        assert replayed.wait_for(expected, TAKEOVER)
        assert db.unsubscribe(replayed)
        assert replayed.ids() == expected, to_id
    assert db.reset_subscription("never made", to_id=0) is False


def test_a_reset_to_a_time_starts_at_the_first_chunk_stored_then(impl: Impl, nats_url: str) -> None:
    db = impl.DatabaseConnection(nats_url)
    seen = Seen()
    assert db.subscribe(seen, durable_name="timed")
    older = _chunk(impl, db, "older", 3)
    since = time.time()
    assert wait_until(lambda: time.time() > since, 5)  # the next chunk is stored after it
    newer = _chunk(impl, db, "newer", 3)
    assert seen.wait_for(older + newer, TAKEOVER)
    assert db.unsubscribe(seen)
    assert db.reset_subscription("timed", since=since) is True
    replayed = Seen()
    assert db.subscribe(replayed, durable_name="timed")
    assert replayed.wait_for(newer, TAKEOVER)
    assert db.unsubscribe(replayed)
    assert replayed.ids() == newer


def test_a_forced_reset_moves_the_running_holder_which_delivers_from_there(
    impl: Impl, nats_url: str, tmp_path: Path
) -> None:
    db = impl.DatabaseConnection(nats_url)
    out = tmp_path / "out"
    with holder_process(impl, CHILDREN, nats_url, "moved", out) as proc:
        one, two, three = (_chunk(impl, db, tag, 5) for tag in ("one", "two", "three"))
        assert _delivered_at_least(out, 15) == one + two + three
        assert wait_until(lambda: _held_by(nats_url, "moved", proc), TAKEOVER)
        assert db.reset_subscription("moved", to_id=one[-1], force=True) is True
        got = _delivered_at_least(out, 25)
        assert got[15:] == two + three, "the holder did not deliver from the reset position"
        err = stop_holder(proc)
    assert "was made again by another client" in err, err
    assert "Traceback" not in err


def test_the_subscriptions_command_deletes_and_resets(
    impl: Impl, nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from notipipe.cli import main

    db = impl.DatabaseConnection(nats_url)
    for name in ("a", "b"):
        seen = Seen()
        assert db.subscribe(seen, durable_name=name)
        assert db.unsubscribe(seen)
    ids = _chunk(impl, db, "x", 3)
    assert main(["subscriptions", "--db", nats_url, "--delete", "a"]) == 0
    assert capsys.readouterr().out == "deleted the durable subscription 'a'\n"
    assert _names(nats_url) == ["b"]
    assert main(["subscriptions", "--db", nats_url, "--delete", "a"]) == 1
    assert capsys.readouterr().err.endswith(": no durable subscription named 'a'\n")
    assert main(["subscriptions", "--db", nats_url, "--reset", "b", "--to", str(ids[-1])]) == 0
    assert capsys.readouterr().out == (
        f"reset the durable subscription 'b': its next delivery starts after the alert #{ids[-1]}\n"
    )
    assert {s.name: s.lag for s in list_subscriptions(nats_url)} == {"b": 0}
    assert main(["subscriptions", "--db", nats_url, "--reset", "b", "--to", "1h"]) == 0
    assert "its next delivery starts at the first alert of " in capsys.readouterr().out
    assert {s.name: s.lag for s in list_subscriptions(nats_url)} == {"b": 3}
    out = tmp_path / "out"
    with holder_process(impl, CHILDREN, nats_url, "b", out) as proc:
        assert _delivered_at_least(out, 3) == ids
        assert wait_until(lambda: _held_by(nats_url, "b", proc), TAKEOVER)
        assert main(["subscriptions", "--db", nats_url, "--reset", "b", "--to", "0"]) == 1
        err = capsys.readouterr().err
        assert f"cannot reset the durable subscription 'b': {proc.pid}@{os.uname().nodename} holds it" in err
        assert main(["subscriptions", "--db", nats_url, "--reset", "b", "--to", "0", "--force"]) == 0
        capsys.readouterr()
        assert _delivered_at_least(out, 6) == ids + ids
        stop_holder(proc)

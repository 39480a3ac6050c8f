"""Deleting and resetting durable names on a real PostgreSQL server: an idle name is deleted and a
later subscribe starts from then; a held name is refused unless forced; forced, the holder loses
the name at once and goes on as it then stands, logging it; a reset delivers exactly what its
snapshot defines (nothing before, nothing skipped after), by id and by time; the CLI for each."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from notipipe import describe_target
from notipipe._errors import ConfigurationError, StorageError
from notipipe._storage.postgresql.schema import MESSAGES
from notipipe._storage.postgresql.subscribers import list_subscriptions
from tests._holders import delivered_ids, holder_process, stop_holder
from tests._pg_rows import Seen, begin_batch, commit_batch, create_schema, write_batch
from tests._pg_util import as_url
from tests._processes import wait_until
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="waits on child processes and the DatabaseConnection singleton"),
]

#: The module whose ``subscriber`` program holds a durable name in another process.
CHILDREN = "tests._pg_children"


@contextmanager
def _holder(impl: Impl, url: str, name: str, out: Path) -> Iterator[subprocess.Popen[str]]:
    """A subscriber process holding ``name`` when this yields; killed if still running at the end."""
    with holder_process(impl, CHILDREN, url, name, out) as proc:
        assert wait_until(lambda: _holder_of(url, name) is not None, 30), "the subscriber never held the name"
        yield proc


def _holder_of(url: str, name: str) -> str | None:
    return next((s.holder for s in list_subscriptions(url) if s.name == name), None)


def _names(url: str) -> list[str]:
    return [s.name for s in list_subscriptions(url)]


def _delivered_at_least(out: Path, n: int, timeout: float = 30.0) -> list[int]:
    got: list[int] = []

    def enough() -> bool:  # another process writes the file: polled, with a deadline
        got[:] = delivered_ids(out)
        return len(got) >= n

    wait_until(enough, timeout, interval=0.05)
    return got


def test_an_idle_name_deleted_is_gone_and_a_later_subscribe_starts_from_then(impl: Impl, pg_dsn: str) -> None:
    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    db = impl.DatabaseConnection(url)
    seen = Seen()
    assert db.subscribe(seen, durable_name="old-dashboard")
    first = write_batch(pg_dsn, ["first"])
    assert seen.wait_for(first)
    assert db.unsubscribe(seen)
    backlog = write_batch(pg_dsn, ["backlog 0", "backlog 1"])  # the name's, until it is deleted
    assert db.delete_subscription("old-dashboard") is True
    assert _names(url) == []
    assert db.delete_subscription("old-dashboard") is False
    assert describe_target(url).delete_subscription("never-made") is False
    again = Seen()
    assert db.subscribe(again, durable_name="old-dashboard")
    after = write_batch(pg_dsn, ["after"])
    assert again.wait_for(after)
    assert db.unsubscribe(again)
    assert again.ids() == after, f"the deleted name's backlog {backlog} came to the new one"


def test_a_name_another_process_holds_is_neither_deleted_nor_reset(
    impl: Impl, pg_dsn: str, tmp_path: Path
) -> None:
    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    target = describe_target(url)
    with _holder(impl, url, "held", tmp_path / "out") as proc:
        who = f"{proc.pid}@{os.uname().nodename}"
        with pytest.raises(
            StorageError, match=f"cannot delete the durable subscription 'held': {who} holds it"
        ):
            target.delete_subscription("held")
        with pytest.raises(
            StorageError, match=f"cannot reset the durable subscription 'held': {who} holds it"
        ):
            target.reset_subscription("held", to_id=0)
        assert _holder_of(url, "held") == who  # nothing changed: the holder holds the name still
        ids = write_batch(pg_dsn, ["still delivered"])
        assert _delivered_at_least(tmp_path / "out", 1) == ids
        stop_holder(proc)


def test_a_forced_delete_takes_the_name_from_its_holder_which_starts_it_again_and_says_so(
    impl: Impl, pg_dsn: str, tmp_path: Path
) -> None:
    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    out = tmp_path / "out"
    with _holder(impl, url, "forced", out) as proc:
        before = write_batch(pg_dsn, ["before"])
        assert _delivered_at_least(out, 1) == before
        assert describe_target(url).delete_subscription("forced", force=True) is True
        # The holder's session was ended: it reconnects and makes the name again, from then on.
        assert wait_until(lambda: _holder_of(url, "forced") == f"{proc.pid}@{os.uname().nodename}", 30)
        after = write_batch(pg_dsn, ["after"])
        assert _delivered_at_least(out, 2) == before + after
        err = stop_holder(proc)
    assert "terminating connection due to administrator command; reconnecting" in err, err
    assert (
        f"durable subscriber 'forced' on {describe_target(url).shown}: its name was deleted while held"
        " (notipipe subscriptions --delete --force, or by hand): made again, delivering the alerts committed"
        " from now on\n" in err
    ), err
    assert "Traceback" not in err


def test_a_reset_to_an_id_delivers_exactly_what_its_snapshot_leaves_undelivered(
    impl: Impl, pg_dsn: str
) -> None:
    """After id N at the reset: the alerts committed by then with ids up to N count as delivered;
    those with higher ids, and those committed later whatever their ids, are delivered."""
    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    db = impl.DatabaseConnection(url)
    seen = Seen()
    assert db.subscribe(seen, durable_name="replay")
    late, late_ids = begin_batch(pg_dsn, ["late 0", "late 1"])  # low ids, committed after the reset
    kept = write_batch(pg_dsn, [f"kept {i}" for i in range(3)])
    # Two transactions interleaved: the one that took the lower ids has the higher xid, so no
    # snapshot alone parts the ids up to N from the others.
    first, second = begin_batch(pg_dsn, ["first 0"]), begin_batch(pg_dsn, ["second 0"])
    more = _insert(first[0], "first 1")
    commit_batch(second[0])
    commit_batch(first[0])
    kept += [first[1][0], second[1][0]]
    again = [more, *write_batch(pg_dsn, [f"again {i}" for i in range(3)])]
    assert seen.wait_for(kept + again)
    assert db.unsubscribe(seen)
    assert db.reset_subscription("replay", to_id=second[1][0]) is True
    commit_batch(late)
    newer = write_batch(pg_dsn, ["newer"])
    assert late_ids[-1] < kept[0]
    replayed = Seen()
    assert db.subscribe(replayed, durable_name="replay")
    assert replayed.wait_for(again + late_ids + newer)
    assert db.unsubscribe(replayed)
    assert sorted(replayed.ids()) == sorted(again + late_ids + newer), (
        "an alert skipped or one before N again"
    )
    assert describe_target(url).reset_subscription("never-made", to_id=0) is False


def _insert(conn: Any, body: str) -> int:
    """One more SMS in ``conn``'s open transaction (as ``begin_batch`` inserts); its id."""
    got = conn.execute(
        f"INSERT INTO {MESSAGES} (kind, created_at, priority, address, subject, body, origin_host, "
        "origin_pid) VALUES ('sms', %s, 3, '+15550100', '', %s, 'test', 1) RETURNING id",
        (time.time(), body),
    ).fetchone()
    return int(got[0])


def test_a_reset_to_a_time_starts_at_the_first_alert_created_then(impl: Impl, pg_dsn: str) -> None:
    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    db = impl.DatabaseConnection(url)
    seen = Seen()
    assert db.subscribe(seen, durable_name="timed")
    older = write_batch(pg_dsn, ["older 0", "older 1"])
    since = time.time()
    assert wait_until(lambda: time.time() > since, 5)  # the next alerts are created after it
    newer = write_batch(pg_dsn, ["newer 0", "newer 1"])
    assert seen.wait_for(older + newer)
    assert db.unsubscribe(seen)
    assert db.reset_subscription("timed", since=since) is True
    replayed = Seen()
    assert db.subscribe(replayed, durable_name="timed")
    assert replayed.wait_for(newer)
    assert db.unsubscribe(replayed)
    assert replayed.ids() == newer
    assert db.reset_subscription("timed", since=0) is True  # from the first alert stored
    everything = Seen()
    assert db.subscribe(everything, durable_name="timed")
    assert everything.wait_for(older + newer)
    assert db.unsubscribe(everything)
    assert everything.ids() == older + newer


def test_a_forced_reset_moves_the_running_holder_which_delivers_from_there(
    impl: Impl, pg_dsn: str, tmp_path: Path
) -> None:
    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    out = tmp_path / "out"
    with _holder(impl, url, "moved", out) as proc:
        ids = write_batch(pg_dsn, [f"a {i}" for i in range(10)])
        assert _delivered_at_least(out, 10) == ids
        assert describe_target(url).reset_subscription("moved", to_id=ids[4], force=True) is True
        got = _delivered_at_least(out, 15)
        assert got[10:] == ids[5:], "the holder did not deliver from the reset position"
        err = stop_holder(proc)
    assert "its name was reset while held (notipipe subscriptions --reset --force)" in err, err
    assert "Traceback" not in err


def test_the_arguments_are_checked(db: Any, pg_dsn: str) -> None:
    target = describe_target(as_url(pg_dsn))
    with pytest.raises(TypeError, match="exactly one of to_id and since"):
        target.reset_subscription("x")
    with pytest.raises(TypeError, match="exactly one of to_id and since"):
        target.reset_subscription("x", to_id=1, since=1.0)
    with pytest.raises(ValueError, match="to_id must be an alert id"):
        target.reset_subscription("x", to_id=-1)
    with pytest.raises(ValueError, match="since must be a Unix time"):
        target.reset_subscription("x", since=float("nan"))
    with pytest.raises(TypeError, match="force must be a bool"):
        target.delete_subscription("x", force=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="durable_name must be a non-empty printable str"):
        target.delete_subscription("")
    with pytest.raises(
        ConfigurationError, match="durable subscribers need a backend that keeps durable names"
    ):
        db.delete_subscription("x")
    with pytest.raises(
        ConfigurationError, match="durable subscribers need a backend that keeps durable names"
    ):
        db.reset_subscription("x", to_id=0)


def test_the_subscriptions_command_deletes_and_resets(
    impl: Impl, pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from notipipe.cli import main

    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    db = impl.DatabaseConnection(url)
    for name in ("a", "b"):
        seen = Seen()
        assert db.subscribe(seen, durable_name=name)
        assert db.unsubscribe(seen)
    ids = write_batch(pg_dsn, ["0", "1", "2"])
    assert main(["subscriptions", "--db", url, "--delete", "a"]) == 0
    assert capsys.readouterr().out == "deleted the durable subscription 'a'\n"
    assert _names(url) == ["b"]
    assert main(["subscriptions", "--db", url, "--delete", "a"]) == 1
    assert capsys.readouterr().err.endswith(": no durable subscription named 'a'\n")
    assert main(["subscriptions", "--db", url, "--reset", "b", "--to", str(ids[0])]) == 0
    assert capsys.readouterr().out == (
        f"reset the durable subscription 'b': its next delivery starts after the alert #{ids[0]}\n"
    )
    assert {s.name: s.undelivered for s in list_subscriptions(url)} == {"b": 2}
    assert main(["subscriptions", "--db", url, "--reset", "b", "--to", "1h"]) == 0
    assert "its next delivery starts at the first alert of " in capsys.readouterr().out
    assert {s.name: s.undelivered for s in list_subscriptions(url)} == {"b": 3}
    with _holder(impl, url, "b", tmp_path / "out") as proc:
        assert main(["subscriptions", "--db", url, "--delete", "b"]) == 1
        err = capsys.readouterr().err
        assert f"cannot delete the durable subscription 'b': {proc.pid}@{os.uname().nodename} holds it" in err
        assert main(["subscriptions", "--db", url, "--delete", "b", "--force"]) == 0
        capsys.readouterr()
        stop_holder(proc)
    for bad, said in [
        (["--reset", "b"], "subscriptions --reset needs --to ID|WHEN"),
        (["--to", "5"], "subscriptions --to needs --reset"),
        (["--force"], "subscriptions --force needs --delete or --reset"),
        (["--delete", "b", "--json"], "subscriptions --json lists; it does not go with --delete or --reset"),
        (["--delete", "b", "--reset", "b", "--to", "1"], "not allowed with argument"),
        (["--reset", "b", "--to", "yesterday"], "'yesterday' is neither an alert id, nor an age"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(["subscriptions", "--db", url, *bad])
        assert exited.value.code == 2
        assert said in capsys.readouterr().err
    assert main(["subscriptions", "--db", "alerts.db", "--delete", "b"]) == 1
    assert "durable subscribers need a backend that keeps durable names" in capsys.readouterr().err

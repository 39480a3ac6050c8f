"""The user's acceptance cases from DEVELOPERS.md, verbatim, against both twins."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import Impl, drop

pytestmark = pytest.mark.twin


def test_singleton_same_object(impl: Impl) -> None:
    DatabaseConnection: Any = impl.DatabaseConnection  # noqa: N806 - the user's name
    db1 = DatabaseConnection(); db2 = DatabaseConnection(); assert db1 is db2  # noqa: E702  # fmt: skip


@pytest.mark.thread_unsafe(reason="drops the DatabaseConnection singleton its other copies use")
def test_singleton_same_object_from_many_threads(impl: Impl) -> None:
    DatabaseConnection: Any = impl.DatabaseConnection  # noqa: N806
    drop(DatabaseConnection)
    barrier = threading.Barrier(32)
    seen: list[object] = []

    def worker() -> None:
        barrier.wait()
        seen.append(DatabaseConnection())

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 32
    assert all(s is seen[0] for s in seen)
    drop(DatabaseConnection)


def test_message_has_no_dict(impl: Impl) -> None:
    MessageFactory = impl.MessageFactory  # noqa: N806
    msg = MessageFactory.create_message("email"); assert not hasattr(msg, "__dict__")  # noqa: E702  # fmt: skip
    assert type(msg) is impl.EmailMessage


@pytest.mark.thread_unsafe(reason="drops the DatabaseConnection singleton its other copies use")
def test_dashboard_receives_alert(impl: Impl, capsys: pytest.CaptureFixture[str]) -> None:
    DatabaseConnection: Any = impl.DatabaseConnection  # noqa: N806
    drop(DatabaseConnection)

    class DashboardAnalytics:  # no base class
        def update(self, message: str) -> None:
            print(f"dashboard: {message}")

    DatabaseConnection().subscribe(DashboardAnalytics())  # mypy --strict accepts this line
    DatabaseConnection().notify_all("System Alert")  # the dashboard prints the alert
    assert capsys.readouterr().out == "dashboard: System Alert\n"
    drop(DatabaseConnection)


def test_public_names_are_the_selected_twin() -> None:
    import notipipe

    expected = "notipipe._messages_c" if notipipe.COMPILED else "notipipe._messages_py"
    assert notipipe.EmailMessage.__module__ == expected
    assert notipipe.MessageFactory.create_message("sms").__class__ is notipipe.SMSMessage
    assert isinstance(notipipe.DatabaseConnection(), notipipe.Publisher)

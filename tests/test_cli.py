"""The notipipe command: every subcommand, exit codes, one-line errors, and crash safety."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import notipipe
from tests._processes import follow_tail

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="only waits on child processes: copies add load, not coverage"),
]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOTIPIPE_DB", None)
    # The command must pass its output on itself (a pipe is block-buffered), whatever this
    # environment does.
    env.pop("PYTHONUNBUFFERED", None)
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notipipe", *args],
        capture_output=True,
        text=True,
        errors="surrogateescape",  # a non-UTF-8 path comes back as it was given
        cwd=cwd,
        env=_env() if env is None else env,
        timeout=timeout,
        check=False,
    )


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, pattern: str) -> None:
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_run_stores_alerts_and_prints_a_summary(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    result = run_cli("run", "--alerts", "5000", "--threads", "3", "--db", str(db), "--mix", "email=1,sms=1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "progress: 5,000/5,000 alerts, durable 5,000" in out
    assert re.search(r"alerts stored \(this run\)\s+│ 5,000", out), out
    assert re.search(r"throughput\s+│ [\d,]+ alerts/s", out)
    assert (
        f"implementation                 │ {'compiled (Cython)' if notipipe.COMPILED else 'pure Python'}"
        in out
    )
    assert "observer failures              │ 0" in out
    with sqlite3.connect(db) as conn:
        by_kind = dict(conn.execute("SELECT kind, count(*) FROM messages GROUP BY kind").fetchall())
    conn.close()
    assert sum(by_kind.values()) == 5000
    assert 2000 < by_kind["email"] < 3000  # an even mix
    m = re.search(r"per kind \(counter dashboard\)\s+│ email=([\d,]+), sms=([\d,]+)", out)
    assert m is not None
    assert (int(m[1].replace(",", "")), int(m[2].replace(",", ""))) == (by_kind["email"], by_kind["sms"])


def test_run_defaults_to_notipipe_db_in_the_current_directory(tmp_path: Path) -> None:
    result = run_cli("run", "--alerts", "100", "--progress", "none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "notipipe.db").exists()
    again = run_cli("run", "--alerts", "50", "--progress", "none", cwd=tmp_path)
    assert re.search(r"alerts stored \(database total\)\s+│ 150", again.stdout), again.stdout


def test_stats_and_tail(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    assert run_cli("run", "--alerts", "300", "--db", db, "--progress", "none").returncode == 0
    stats = run_cli("stats", "--db", db)
    assert stats.returncode == 0, stats.stderr
    assert "alerts: 300" in stats.stdout
    assert re.search(r"email: \d+", stats.stdout)
    assert "first: " in stats.stdout
    tail = run_cli("tail", "--db", db, "-n", "4")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["#297", "#298", "#299", "#300"]


def test_info() -> None:
    result = run_cli("info")
    assert result.returncode == 0
    assert f"notipipe {notipipe.__version__}" in result.stdout
    assert ("compiled (Cython)" if notipipe.COMPILED else "pure Python") in result.stdout
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert f"GIL enabled: {'yes' if gil else 'no'}" in result.stdout
    assert f"sqlite: {sqlite3.sqlite_version}" in result.stdout


#: ``notipipe`` as a child process in which rich cannot be imported, as where the ``cli`` extra is
#: not installed.
_WITHOUT_RICH = (
    "import sys\nsys.modules['rich'] = None\nfrom notipipe.cli import main\nsys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("progress", ["auto", "lines", "bar"])
def test_run_without_rich_shows_progress_and_a_plain_summary(progress: str, tmp_path: Path) -> None:
    db = tmp_path / "plain.db"
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_RICH, "run", "-n", "3000", "-t", "2", "--db", str(db),
         "--progress", progress],
        capture_output=True, text=True, env=_env(), timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if progress == "bar":  # the plain bar: on stderr, one line at a time off a terminal
        assert "progress:" not in result.stdout
        assert re.search(r"^alerts 3,000/3,000 \(100%\) [\d,]+/s, durable 3,000, \d:\d\d:\d\d$",
                         result.stderr, re.MULTILINE), result.stderr  # fmt: skip
    else:  # auto, off a terminal: lines on stdout, as with rich
        assert "progress: 3,000/3,000 alerts, durable 3,000" in result.stdout
        assert result.stderr == ""
    assert result.stdout.count("notipipe run: summary\n") == 1
    assert re.search(r"^alerts stored \(this run\)\s+│ 3,000$", result.stdout, re.MULTILINE), result.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (3000,)
    conn.close()


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_run_without_rich_on_a_terminal_redraws_one_progress_line(tmp_path: Path) -> None:
    import pty

    master, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-c", _WITHOUT_RICH, "run", "-n", "3000", "--db", str(tmp_path / "t.db")],
        stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, env=_env(),
    ) as child:  # fmt: skip
        os.close(terminal)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert child.wait(timeout=120) == 0
    os.close(master)
    out = b"".join(chunks).decode()
    # On a terminal (auto: the bar) the plain line is redrawn in place, then the summary follows.
    assert "\ralerts 3,000/3,000 (100%) " in out, out
    assert "progress:" not in out
    assert re.search(r"alerts stored \(this run\)\s+│ 3,000", out), out


def test_importing_the_cli_imports_no_optional_dependency() -> None:
    program = (
        "import sys, notipipe, notipipe.cli\n"
        "print(sorted({name.partition('.')[0] for name in sys.modules} & {'rich', 'starlette', 'uvicorn'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=_env(), timeout=120, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")


@pytest.mark.parametrize(
    "command", [[], ["run"], ["stats"], ["tail"], ["subscriptions"], ["serve"], ["info"]]
)
def test_help_on_every_subcommand(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: notipipe")
    assert "--help" in result.stdout
    assert "exit status" in result.stdout
    assert "example" in result.stdout
    if command in (["run"], ["stats"], ["tail"], ["serve"]):
        assert "$NOTIPIPE_DB" in result.stdout
    if command == ["tail"]:
        assert "--follow" in result.stdout
    if command in (["stats"], ["tail"], ["subscriptions"], ["info"]):
        # --json says where its fields are documented (argparse may wrap the URL's line).
        assert re.search(
            r"--json\s+print .+? docs/json\.md\s+\(https://\S+/docs/json\.md\)", result.stdout, re.S
        )


def test_no_command_prints_help_and_fails() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "run" in result.stdout
    assert "stats" in result.stdout


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["run", "--alerts", "-5"], r"notipipe run: error: argument --alerts/-n: -5 is negative"),
        (["run", "--alerts", "many"], r"'many' is not a whole number"),
        (["run", "--threads", "0"], r"argument --threads/-t: must be at least 1"),
        (["run", "--mix", "fax=1"], r"'fax=1': expected email=W or sms=W"),
        (["run", "--mix", "email=0,sms=0"], r"the weights add up to 0"),
        (["run", "--bogus"], r"notipipe: error: unrecognized arguments: --bogus"),
        (["tail", "-n", "-1"], r"notipipe tail: error: argument -n: -1 is negative"),
        (["frobnicate"], r"invalid choice: 'frobnicate'"),
        (["run", "x\ny"], r"notipipe: error: unrecognized arguments: x\\ny \(see notipipe --help\)$"),
        (["tail", "-n", " -5\n"], r"argument -n: -5 is negative"),
        (["run", "--max-delay", "nan"], r"argument --max-delay: nan is not between 0 and 60 seconds"),
        (["run", "--max-delay", "inf"], r"argument --max-delay: inf is not between 0 and 60 seconds"),
        (["run", "--max-delay", "-1"], r"argument --max-delay: -1 is not between 0 and 60 seconds"),
        (["run", "--max-delay", "1e9"], r"argument --max-delay: 1e9 is not between 0 and 60 seconds"),
        (["run", "--max-delay", "soon"], r"argument --max-delay: 'soon' is not a number"),
        (
            ["tail", "-n", "1" + "0" * 20],
            r"argument -n: 10+ is too large \(at most 9,223,372,036,854,775,807\)",
        ),
        (["tail", "-n", "9" * 5000], r"argument -n: 9{40}\.\.\. is too large"),
        (["run", "--alerts", "1" + "0" * 20], r"argument --alerts/-n: 10+ is too large"),
        (["run", "--threads", "1" + "0" * 20], r"argument --threads/-t: 10+ is too large \(at most 1,024\)"),
        (
            ["run", "--alerts", "1", "--chunk", "1" + "0" * 20],
            r"argument --chunk: 10+ is too large \(at most 1,000,000\)",
        ),
        (
            ["run", "--alerts", "1", "--batch-size", "1" + "0" * 20],
            r"argument --batch-size: 10+ is too large",
        ),
        (["run", "--alerts", "1", "--seed", "1" + "0" * 20], r"argument --seed: 10+ is too large"),
        (["run", "--alerts", "1", "--db", ""], r"argument --db: the path is empty"),
        (["stats", "--db", ""], r"argument --db: the path is empty"),
        (["tail", "--db", ""], r"argument --db: the path is empty"),
        (
            ["run", "--alerts", "1", "--mix", "email=1e308,sms=1e308"],
            r"the weights add up to more than a float holds",
        ),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(args: list[str], pattern: str, tmp_path: Path) -> None:
    _one_line_error(run_cli(*args, cwd=tmp_path), 2, pattern)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_databases_give_one_line_status_1_and_stay_unchanged(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite\n" * 100)
    digest = hashlib.sha256(junk.read_bytes()).hexdigest()
    for command in (["run", "--alerts", "10"], ["stats"], ["tail"]):
        result = run_cli(*command, "--db", str(junk))
        _one_line_error(result, 1, rf"notipipe {command[0]}: error: .*junk\.db: not a SQLite database")
    assert hashlib.sha256(junk.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.db"]
    _one_line_error(run_cli("run", "--db", str(tmp_path)), 1, r"is a directory")
    _one_line_error(run_cli("stats", "--db", str(tmp_path / "none.db")), 1, r"none\.db: no such database")
    assert not (tmp_path / "none.db").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_nats_server_out_of_reach_is_one_error_line_without_its_password() -> None:
    url = f"nats://ops:s3cret@127.0.0.1:{_closed_port()}/X"
    for command in ("stats", "tail"):
        result = run_cli(command, "--db", url)
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr, result.stderr
        assert "s3cret" not in result.stderr
        first = result.stderr.splitlines()[0]
        assert re.fullmatch(
            rf"notipipe {command}: error: nats://ops:\*\*\*@127\.0\.0\.1:\d+/X: cannot connect: .+", first
        )


# -- hostile arguments: every option of every subcommand ----------------------------------------

_HOSTILE = ["", " ", "-1", "0", "1_0", "1" + "0" * 20, "9" * 5000, "nan", "inf", "-inf", "1e9", "0x10",
            "\udcff", "é", "=", ",", "email=,sms=1", "email=1,fax", ".", "a\nb", " -5\n"]  # fmt: skip
_OPTIONS = [
    ("run", "--alerts"), ("run", "--threads"), ("run", "--chunk"), ("run", "--batch-size"),
    ("run", "--max-delay"), ("run", "--seed"), ("run", "--mix"), ("run", "--synchronous"),
    ("run", "--deliver"), ("run", "--progress"), ("run", "--db"), ("stats", "--db"), ("tail", "--db"),
    ("tail", "-n"),
]  # fmt: skip
_SWEEP = [(command, option, value) for command, option in _OPTIONS for value in _HOSTILE]

# Calls main() once per argv in one child process (the import costs more than a command) and
# reports what each would have made the command do: its exit status and stderr, or the
# exception that escaped (which the command would print as a traceback).
# A command still busy after a minute (a value accepted that should not be) counts as escaped.
_SWEEP_CHILD = """
import contextlib, io, json, signal, sys, traceback
from notipipe.cli import main

def too_slow(signum, frame):
    raise TimeoutError("still running after 60 s")

alarm = getattr(signal, "SIGALRM", None)
if alarm is not None:
    signal.signal(alarm, too_slow)
results = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    try:
        if alarm is not None:
            signal.alarm(60)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit:
                code = exit.code
    except BaseException:
        code, err = "escaped", io.StringIO(traceback.format_exc())
    finally:
        if alarm is not None:
            signal.alarm(0)
    results.append([code, err.getvalue()])
json.dump(results, sys.stdout)
"""


def _sweep_argv(command: str, option: str, value: str, db: str) -> list[str]:
    if command == "run":  # small runs: only the option under test is hostile (the last one wins)
        return ["run", "--alerts", "10", "--progress", "none", "--db", db, option, value]
    return [command, "--db", db, option, value] if option != "--db" else [command, option, value]


@pytest.fixture(scope="module")
def sweep_results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], tuple[object, str]]:
    cwd = tmp_path_factory.mktemp("sweep")
    db = str(cwd / "sweep.db")
    assert run_cli("run", "--alerts", "20", "--progress", "none", "--db", db).returncode == 0
    (cwd / "junk").write_bytes(b"not a database\n" * 100)
    argvs = [_sweep_argv(*case, db=db) for case in _SWEEP]
    child = subprocess.run(
        [sys.executable, "-c", _SWEEP_CHILD],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(),
        timeout=600,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    results = json.loads(child.stdout)
    return {case: (code, err) for case, (code, err) in zip(_SWEEP, results, strict=True)}


@pytest.mark.parametrize(
    "case", _SWEEP, ids=[f"{c}-{o}-{v[:12].encode('unicode_escape').decode()}" for c, o, v in _SWEEP]
)
def test_hostile_values_give_one_line_never_a_traceback(
    case: tuple[str, str, str], sweep_results: dict[tuple[str, str, str], tuple[object, str]]
) -> None:
    code, err = sweep_results[case]
    assert code in (0, 1, 2), f"{case}: {code}\n{err}"
    if code != 0:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"notipipe {case[0]}: error: "), err


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_a_non_utf8_path_is_printed_escaped_not_a_traceback(tmp_path: Path, encoding: str) -> None:
    # A strict stdout encoding (a UTF-8 locale, or PYTHONIOENCODING) cannot print the undecodable
    # byte of such a path; the command escapes it instead of failing after the work is done.
    db = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"\xff.db"))
    env = _env(PYTHONIOENCODING=encoding)
    for args in (["run", "--alerts", "10", "--progress", "lines"], ["stats"], ["tail", "-n", "1"]):
        result = run_cli(*args, "--db", db, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    stats = run_cli("stats", "--db", db, env=env)
    assert "\\udcff.db" in stats.stdout
    assert "alerts: 10" in stats.stdout


# -- a closed output ends the command quietly ---------------------------------------------------


def _closed_pipe_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A pipe whose reader is gone before the command starts: its first write fails with EPIPE,
    # as `notipipe ... | head -1` does once head has exited.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "notipipe", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=_env(),
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["info"],
        ["stats", "--db", "t.db"],
        ["tail", "--db", "t.db", "-n", "5"],
        ["tail", "--db", "t.db", "-n", "5", "--follow"],
        ["run", "--alerts", "100", "--db", "t.db", "--progress", "lines"],
        ["run", "--alerts", "100", "--db", "t.db", "--progress", "none"],
        ["--help"],
        ["tail", "--help"],
        ["--version"],
    ],
)
def test_a_closed_output_ends_quietly_with_status_141(args: list[str], tmp_path: Path) -> None:
    assert (
        run_cli("run", "--alerts", "10", "--progress", "none", "--db", "t.db", cwd=tmp_path).returncode == 0
    )
    result = _closed_pipe_run(*args, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (141, "")


def test_tail_into_head_ends_quietly(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    assert run_cli("run", "--alerts", "20000", "--progress", "none", "--db", db).returncode == 0
    with subprocess.Popen(
        [sys.executable, "-m", "notipipe", "tail", "--db", db, "-n", "20000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline()  # head -1: one line, then the reader is gone
        proc.stdout.close()  # far more than a pipe's buffer is still to be written
        err = proc.stderr.read()
        proc.wait(timeout=120)
    assert first.startswith(b"#1 ")
    assert (proc.returncode, err) == (141, b"")


# -- concurrent runs, tail --follow -------------------------------------------------------------


def _stored_this_run(out: str) -> int:
    m = re.search(r"alerts stored \(this run\)\s+│ ([\d,]+)", out)
    assert m is not None, out
    return int(m[1].replace(",", ""))


def test_two_concurrent_runs_each_report_what_they_stored(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    assert run_cli("run", "--alerts", "0", "--progress", "none", "--db", db).returncode == 0
    sizes = (200_000, 150_000)  # large enough that the two runs overlap
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "notipipe", "run", "--alerts", str(n), "--threads", "1",
             "--progress", "none", "--db", db],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for n in sizes
    ]  # fmt: skip
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert [_stored_this_run(out) for out, _ in outputs] == list(sizes)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == sum(sizes)
    finally:
        conn.close()


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name == "nt", reason="POSIX signals")
def test_tail_follow_prints_alerts_as_another_process_stores_them(tmp_path: Path) -> None:
    db = str(tmp_path / "live.db")
    assert run_cli("run", "--alerts", "5", "--progress", "none", "--db", db).returncode == 0
    with follow_tail("tail", "--follow", "-n", "2", "--db", db, env=_env()) as tail:
        ids: list[int] = []
        try:
            for _ in range(2):  # the last two, printed before anything new is stored
                ids.append(int(tail.line().split()[0][1:]))
            assert ids == [4, 5]
            # Another process stores while tail follows: two runs, so tail sees more than one commit.
            for n in (3000, 2000):
                writer = run_cli(
                    "run", "--alerts", str(n), "--batch-size", "500", "--progress", "none", "--db", db
                )
                assert writer.returncode == 0, writer.stderr
            while ids[-1] < 5005:
                ids.append(int(tail.line().split()[0][1:]))
        finally:
            tail.stop(signal.SIGINT)  # Ctrl-C
        assert tail.next() is None  # nothing more once interrupted
        assert ids == list(range(4, 5006))
        assert (tail.proc.returncode, tail.stderr()) == (130, "")


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name == "nt", reason="POSIX signals")
def test_tail_follow_with_n_0_prints_only_new_alerts(tmp_path: Path) -> None:
    db = str(tmp_path / "live.db")
    assert run_cli("run", "--alerts", "5", "--progress", "none", "--db", db).returncode == 0
    with follow_tail("tail", "-f", "-n", "0", "--db", db, env=_env()) as tail:
        ids: list[int] = []
        try:
            # Nothing tells when tail has looked at the file, so store one alert at a time until
            # it prints one: whatever it prints first must be newer than the five before it.
            for _ in range(100):
                assert run_cli("run", "--alerts", "1", "--progress", "none", "--db", db).returncode == 0
                with contextlib.suppress(queue.Empty):
                    ids.append(int(tail.line(timeout=1).split()[0][1:]))
                    break
            assert ids, "tail -f printed none of the new alerts"
            assert run_cli("run", "--alerts", "10", "--progress", "none", "--db", db).returncode == 0
            conn = sqlite3.connect(db)
            try:
                newest = conn.execute("SELECT max(id) FROM messages").fetchone()[0]
            finally:
                conn.close()
            while ids[-1] < newest:
                ids.append(int(tail.line().split()[0][1:]))
        finally:
            tail.stop(signal.SIGINT)
        assert ids[0] > 5
        assert ids == list(range(ids[0], newest + 1))
        assert (tail.proc.returncode, tail.stderr()) == (130, "")


def test_tail_follow_since_starts_at_the_first_alert_of_that_time(tmp_path: Path) -> None:
    db = str(tmp_path / "live.db")
    assert run_cli("run", "--alerts", "5", "--progress", "none", "--db", db).returncode == 0
    conn = sqlite3.connect(db)
    try:
        with conn:  # the first three are two hours old
            conn.execute("UPDATE messages SET created_at = created_at - 7200 WHERE id <= 3")
    finally:
        conn.close()
    with follow_tail("tail", "-f", "--since", "1h", "--db", db, env=_env()) as tail:
        try:
            printed = [tail.next(), tail.next()]
        finally:
            tail.stop(signal.SIGINT)
        assert [line.split()[0] for line in printed if line] == ["#4", "#5"], tail.stderr()
        assert tail.proc.returncode == 130


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["tail", "--since", "1h"], "tail --since needs --follow"),
        (["tail", "-f", "--since", "yesterday"], "neither an age (90s, 10m, 2h, 7d, 2w) nor an ISO time"),
        (["tail", "-f", "--since", "1800-01-01"], "is before 1970"),
    ],
)
def test_tail_since_refuses_what_it_cannot_use(tmp_path: Path, argv: list[str], said: str) -> None:
    done = run_cli(*argv, "--db", str(tmp_path / "a.db"))
    assert done.returncode == 2
    assert said in done.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name == "nt", reason="POSIX signals")
def test_tail_follow_stops_on_sigterm_as_on_ctrl_c(tmp_path: Path) -> None:
    db = str(tmp_path / "live.db")
    assert run_cli("run", "--alerts", "5", "--progress", "none", "--db", db).returncode == 0
    with follow_tail("tail", "-f", "-n", "2", "--db", db, env=_env()) as tail:
        ids: list[int] = []
        try:
            for _ in range(2):  # printed once tail holds its signals
                ids.append(int(tail.line().split()[0][1:]))
        finally:
            tail.stop(signal.SIGTERM)  # kill PID, a service manager's stop
        assert ids == [4, 5]
        assert tail.next() is None  # nothing more once stopped
        # Quietly, as after Ctrl-C, with the status a shell reports for SIGTERM.
        assert (tail.proc.returncode, tail.stderr()) == (143, "")


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name == "nt", reason="POSIX signals")
def test_tail_follow_started_with_sigint_ignored_keeps_following_on_ctrl_c(tmp_path: Path) -> None:
    # A background job (`notipipe tail -f &` in a script) or nohup: SIGINT is ignored from the
    # start and stays so; SIGTERM stops it.
    db = str(tmp_path / "live.db")
    assert run_cli("run", "--alerts", "5", "--progress", "none", "--db", db).returncode == 0
    with follow_tail("tail", "-f", "-n", "2", "--db", db, env=_env(), sigint_ignored=True) as tail:
        ids: list[int] = []
        try:
            for _ in range(2):
                ids.append(int(tail.line().split()[0][1:]))
            tail.proc.send_signal(signal.SIGINT)
            # Still following: an alert stored after the SIGINT (by a process that takes far
            # longer to start than a handled SIGINT takes to stop tail) is printed.
            assert run_cli("run", "--alerts", "1", "--progress", "none", "--db", db).returncode == 0
            ids.append(int(tail.line().split()[0][1:]))
            assert tail.proc.poll() is None
        finally:
            tail.stop(signal.SIGTERM)
        assert ids == [4, 5, 6]
        assert tail.next() is None
        assert (tail.proc.returncode, tail.stderr()) == (143, "")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only")
def test_sigkill_mid_run_loses_no_alert_reported_durable(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    with subprocess.Popen(
        [sys.executable, "-m", "notipipe", "run", "--alerts", "50000000", "--threads", "2",
         "--db", str(db), "--progress", "lines", "--max-delay", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        reported = 0
        deadline = time.monotonic() + 60
        try:
            for line in proc.stdout:
                m = re.match(r"progress: [\d,]+/[\d,]+ alerts, durable ([\d,]+)", line)
                if m:
                    reported = int(m[1].replace(",", ""))
                if reported >= 30_000 or time.monotonic() > deadline:
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert reported >= 30_000, "the run never reported durable alerts"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        ids = conn.execute("SELECT min(id), max(id) FROM messages").fetchone()
    finally:
        conn.close()
    assert stored >= reported
    assert ids == (1, stored)  # whole batches only: no gaps


def test_benchmark_suite_runs_on_a_tiny_size(tmp_path: Path) -> None:
    suite = Path(__file__).parent.parent / "benchmarks" / "run.py"
    if not suite.exists():
        pytest.skip("benchmarks/ is not shipped with the installed tests")
    result = subprocess.run(
        [sys.executable, str(suite), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    md = next(tmp_path.glob("cpython-*.md")).read_text()
    assert "## Targets" in md
    assert "plain loop over bound update (baseline)" in md
    assert "reference: same work, nothing shared" in md
    assert "T=2 / T=1 busy" in md  # the scaling table has both baselines

"""What browsers that never read cost ``notipipe serve``: its memory while e-mails are written.

    python benchmarks/bench_dashboard_stuck.py [--clients 1,50] [--seconds 90] [--python PATH]

For each count of stuck clients: a fresh SQLite file, ``notipipe serve`` at its defaults, that
many clients that ask for the event stream and then read nothing (``tests/_stuck_clients.py``:
raw sockets with a tiny receive buffer, a laptop asleep with its connection open), and one
writer saving e-mails with 1 KiB bodies as fast as it can for ``--seconds``. Prints, as
Markdown, the server's resident memory (VmRSS) before the writer starts, its highest and its
last reading (one a second), how many alerts were written, and how many of the clients the
server cut off. ``--python`` runs the server and the writer on another installation (an older
notipipe, to compare): only the public API and command line are used. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._stuck_clients import hung_up, stuck_client  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def measure(python: str, clients: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "stuck.db")
        seed = [python, "-m", "notipipe", "run", "--db", db, "-n", "100", "--progress", "none"]
        subprocess.run(seed, check=True, capture_output=True, timeout=120)
        server = subprocess.Popen(
            [python, "-m", "notipipe", "serve", "--db", db, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        writer: subprocess.Popen[str] | None = None
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[2]
            port = int(url.split("//")[1].split("/")[0].rsplit(":", 1)[1])
            socks = [stuck_client("127.0.0.1", port) for _ in range(clients)]
            time.sleep(1.0)  # the streams start: the baseline is with every client connected
            before = rss_mib(server.pid)
            said = Path(tmp) / "writer.out"  # a file, not a pipe: a full pipe would stop the writer
            with said.open("w") as out:
                writer = subprocess.Popen(
                    [python, "-m", "tests._stuck_clients", "write", db],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            readings = [before]
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(1.0)
                readings.append(rss_mib(server.pid))
            cut_off = sum(hung_up(sock) for sock in socks)
            writer.kill()
            writer.wait(timeout=60)
            # Its last line may be cut short by the kill.
            totals = [line.removeprefix("saved ") for line in said.read_text().splitlines()]
            saved = max((int(n) for n in totals if n.isdigit()), default=0)
            for sock in socks:
                sock.close()
            return {
                "before": before,
                "highest": max(readings),
                "last": readings[-1],
                "saved": saved,
                "cut_off": cut_off,
            }
        finally:
            if writer is not None and writer.poll() is None:
                writer.kill()
                writer.communicate(timeout=60)
            server.kill()
            server.communicate(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,50", help="counts of stuck clients, comma-separated")
    parser.add_argument("--seconds", type=float, default=90.0, help="how long the writer writes")
    parser.add_argument("--python", default=sys.executable, help="the interpreter with notipipe to measure")
    args = parser.parse_args()
    print(f"notipipe serve ({args.python}), e-mails with 1 KiB bodies written for {args.seconds:g} s\n")
    print("| stuck clients | RSS before (MiB) | highest (MiB) | last (MiB) | alerts written | cut off |")
    print("|---:|---:|---:|---:|---:|---:|")
    for clients in (int(n) for n in args.clients.split(",")):
        r = measure(args.python, clients, args.seconds)
        print(
            f"| {clients} | {r['before']:.0f} | {r['highest']:.0f} | {r['last']:.0f} | "
            f"{r['saved']:,.0f} | {r['cut_off']:.0f} of {clients} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

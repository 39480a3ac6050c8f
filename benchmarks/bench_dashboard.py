"""Does the dashboard keep up with ``notipipe run``? The rate and the lag a real browser sees.

    python benchmarks/bench_dashboard.py [--alerts N] [--chromium PATH]

Starts ``notipipe serve`` on a fresh SQLite file, opens the page in headless Chromium
(Playwright, Debian's ``chromium``), then runs ``notipipe run`` at its defaults into the file and
waits until the page has every alert. Prints, as Markdown: the run's own throughput, the alerts
per second the browser received (mean over the run, best second), and two lags per alert, p50
and p99: from its creation (``created_at``) to its arrival in the browser, which includes the
run's group commit; and from the dashboard server reading it to its arrival.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._dashboard_procs import children  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=None, help="alerts for notipipe run (default: its own)")
    parser.add_argument("--chromium", default=os.environ.get("NOTIPIPE_CHROMIUM") or shutil.which("chromium"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, children() as kids:
        db = Path(tmp) / "bench.db"
        seed = kids.start("run", "--db", str(db), "-n", "1", "--progress", "none")
        seed.communicate(timeout=120)
        server, url = kids.serve(db)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium, args=["--no-sandbox", "--disable-background-networking"]
            )
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("() => window.notipipe && window.notipipe.snapshotUpto !== null")
            run_args = ["run", "--db", str(db), "--progress", "none"]
            if args.alerts is not None:
                run_args += ["-n", str(args.alerts)]
            started = time.perf_counter()
            run = kids.start(*run_args)
            out, err = run.communicate(timeout=3600)
            if run.returncode:
                raise SystemExit(f"notipipe run failed: {err}")
            ran = time.perf_counter() - started
            found = re.search(r"alerts stored \(this run\)\s*│\s*([\d,]+)", out)
            if found is None:
                raise SystemExit(f"notipipe run printed no count of stored alerts: {out}")
            stored = int(found.group(1).replace(",", ""))
            page.wait_for_function(f"() => window.notipipe.received >= {stored}", timeout=600_000)
            caught_up = time.perf_counter() - started
            figures = page.evaluate(
                """() => {
                const s = window.notipipe;
                const seconds = [...s.receivedPerSecond.entries()].sort((a, b) => a[0] - b[0]);
                const span = seconds.length ? seconds[seconds.length - 1][0] - seconds[0][0] + 1 : 1;
                return {
                    received: s.received, duplicates: s.duplicates, gaps: s.gaps.length, events: s.events,
                    best: Math.max(...seconds.map(([, n]) => n)), mean: s.received / span,
                    p50: s.lagPercentile(0.5), p99: s.lagPercentile(0.99),
                    sp50: s.lagPercentile(0.5, s.serverLagHistogram),
                    sp99: s.lagPercentile(0.99, s.serverLagHistogram),
                };
            }"""
            )
            browser.close()
        throughput = re.search(r"throughput\s*│\s*([\d,]+) alerts/s", out)
        rate = throughput.group(1) if throughput else "?"
        print(f"| notipipe run (defaults) | {rate} alerts/s, {ran:.1f} s |")
        print(
            f"| alerts the browser received | {figures['received']:,} of {stored:,} "
            f"in {figures['events']:,} events "
            f"(duplicates {figures['duplicates']}, gaps {figures['gaps']}); all in by {caught_up:.1f} s |"
        )
        print(
            f"| browser receive rate | mean {figures['mean']:,.0f} alerts/s, "
            f"best second {figures['best']:,} |"
        )
        print(f"| lag, creation to browser | p50 {figures['p50']} ms, p99 {figures['p99']} ms |")
        print(f"| lag, server read to browser | p50 {figures['sp50']} ms, p99 {figures['sp99']} ms |")
        server.terminate()


if __name__ == "__main__":
    main()

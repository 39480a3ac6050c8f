"""Turn one run of ``run.py`` into ``<tag>.md`` (tables, ratios, target checks) and ``<tag>.png``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

BASE_FANOUT = "plain loop over bound update (baseline)"
BASE_MESSAGE = "dataclass(slots=True) (baseline)"
CEILING = "raw executemany (ceiling)"
MSGSPEC = "msgspec Struct(gc=False)"
MSGSPEC_FACTORY = "msgspec Struct through a factory function: kinds[kind](**fields)"
FROZEN = "dataclass(slots=True, frozen=True)"
PLAIN_SHARED = "reference: plain loop over 4 shared observers, no notipipe"
NOTHING_SHARED = "reference: same work, nothing shared"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _find(table: dict[str, Any], *words: str) -> str | None:
    for name in table:
        if all(w in name for w in words):
            return name
    return None


def _message_targets(
    r: dict[str, Any], base: float, pure_fanout: float | None
) -> list[tuple[str, str, bool | None]]:
    """The message-creation targets; ``base``/``pure_fanout``: K=4 fan-out of the plain loop / pure twin."""
    out: list[tuple[str, str, bool | None]] = []
    msgs = r["messages"]
    direct_c = _find(msgs, "compiled", "SMSMessage(")
    factory_c = _find(msgs, "compiled", "create_message")
    direct_p = _find(msgs, "pure", "SMSMessage(")
    header = 32 if r["free_threaded"] else 16
    limit = header + 8 * 5
    if direct_c:
        if MSGSPEC in msgs:
            ms, ns = msgs[MSGSPEC]["ns"], msgs[direct_c]["ns"]
            out.append(
                ("compiled SMSMessage(...): no slower than msgspec", f"{ns:.0f} vs {ms:.0f} ns", ns <= ms)
            )
            if factory_c and MSGSPEC_FACTORY in msgs:
                peer, ns = msgs[MSGSPEC_FACTORY]["ns"], msgs[factory_c]["ns"]
                out.append(
                    (
                        "compiled create_message('sms', ...): no slower than the same factory on msgspec",
                        f"{ns:.0f} vs {peer:.0f} ns",
                        ns <= peer,
                    )
                )
                out.append(
                    (
                        "(for reference: create_message, dispatch included, vs a direct msgspec call)",
                        f"{ns:.0f} vs {ms:.0f} ns",
                        None,
                    )
                )
        else:
            out.append(("message creation no slower than msgspec", "msgspec not installed here", None))
        b = msgs[direct_c]["bytes"]
        out.append((f"compiled SMSMessage (5 fields) <= {limit} bytes", f"{b:.1f} bytes", b <= limit + 0.5))
    if direct_p and pure_fanout:
        # The pure-twin bound: a message made and fanned out to 4 observers, against a
        # plain dataclass(slots=True) and a plain loop. FROZEN shows what the frozen slotted
        # dataclass that the pure twin must be costs on its own, before any validation.
        plain = msgs[BASE_MESSAGE]["ns"] + base
        ratio = (msgs[direct_p]["ns"] + pure_fanout) / plain
        out.append(
            (
                "pure SMSMessage(...) + pure fan-out K=4 <= 1.5x dataclass(slots=True) + plain loop",
                f"{ratio:.2f}x",
                ratio <= 1.5,
            )
        )
        if FROZEN in msgs:
            floor = (msgs[FROZEN]["ns"] + base) / plain
            out.append(
                (
                    "(floor: frozen slotted dataclass, no validation, + plain loop, same comparison)",
                    f"{floor:.2f}x",
                    None,
                )
            )
    return out


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of the performance issue that this run can check."""
    out: list[tuple[str, str, bool | None]] = []
    k4 = r["fanout"]["4"]
    base = k4[BASE_FANOUT]
    compiled = _find(k4, "compiled")
    pure = _find(k4, "pure")
    if compiled:
        ratio = k4[compiled] / base
        out.append(("fan-out K=4, compiled <= 1.2x plain loop", f"{ratio:.2f}x", ratio <= 1.2))
        for peer in ("pyee emit", "psygnal emit"):
            if peer in k4:
                speedup = k4[peer] / k4[compiled]
                out.append(
                    (f"fan-out K=4, compiled >= 5x faster than {peer}", f"{speedup:.1f}x", speedup >= 5)
                )
    if pure:
        ratio = k4[pure] / base
        out.append(("fan-out K=4, pure <= 1.5x plain loop", f"{ratio:.2f}x", ratio <= 1.5))
    out += _message_targets(r, base, k4[pure] if pure else None)
    e2e = r["end_to_end"]
    name = _find(e2e, "compiled", "save_many")
    if name:
        share = e2e[name] / e2e[CEILING]
        out.append(("end-to-end, compiled >= 80% of the executemany ceiling", f"{share:.0%}", share >= 0.8))
    if r["free_threaded"] and "compiled" in r["scaling"]["ratios"]:  # the target is the compiled twin's
        out += _scaling_targets(r["scaling"])
    return out


def _scaling_targets(scaling: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    for prefix, how in (("busy_", "every vCPU busy in both runs"), ("", "as is")):
        ratios = scaling[f"{prefix}ratios"]
        speedup = ratios["compiled"]["2"]
        out.append(
            (
                f"free-threaded: 2 threads >= 1.7x one thread, compiled, {how}",
                f"{speedup:.2f}x",
                speedup >= 1.7,
            )
        )
        ceiling, plain = ratios[NOTHING_SHARED]["2"], ratios[PLAIN_SHARED]["2"]
        paired = scaling[f"{prefix}of_ceiling"]["compiled"]["2"]  # within each round
        out += [
            (
                f"(compiled against the same work, nothing shared, {how})",
                f"{speedup:.2f}x of {ceiling:.2f}x ({paired:.0%} paired by round)",
                None,
            ),
            (
                f"(compiled against a plain loop over the same shared observers, {how})",
                f"{speedup:.2f}x of {plain:.2f}x ({speedup / plain:.0%})",
                None,
            ),
        ]
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# notipipe benchmarks: {r['tag']}",
        "",
        f"{r['label']}. Twins measured side by side: {', '.join(r['twins'])}.",
    ]
    if r["quick"]:
        lines += ["", "**--quick run: tiny sizes, the figures mean nothing.**"]
    s = r["sizes"]
    lines += [
        "",
        f"Medians of {s['repeats']} round-robin repeats. Ratios are against the baseline of the same run.",
        "",
    ]

    lines += ["## Targets", "", _row(["target", "measured", "met"]), _row(["---", "---:", ":---:"])]
    for target, measured, met in targets(r):
        lines.append(_row([target, measured, "n/a" if met is None else ("yes" if met else "**no**")]))

    lines += fanout_table(r["fanout"], s)
    lines += batches_table(r["batches"], s)
    lines += messages_table(r["messages"], s)
    lines += end_to_end_table(r["end_to_end"], s)
    lines += scaling_table(r["scaling"], s)
    return "\n".join(lines) + "\n"


# -- one table per family: also what each bench_*.py prints when run alone ----------------------


def fanout_table(fan: dict[str, dict[str, float]], s: dict[str, Any]) -> list[str]:
    del s  # every family's table takes the sizes; this one states its own
    lines = ["", "## Fan-out: ns per message to K observers", ""]
    lines += [
        _row(["case", "K=1", "K=4", "K=16", "K=4 vs baseline"]),
        _row(["---", "---:", "---:", "---:", "---:"]),
    ]
    for name in fan["4"]:
        cells = [f"{fan[k][name]:,.0f}" for k in ("1", "4", "16")]
        lines.append(_row([name, *cells, f"{fan['4'][name] / fan['4'][BASE_FANOUT]:.2f}x"]))
    return lines


def batches_table(batches: dict[str, float], s: dict[str, Any]) -> list[str]:
    lines = ["", f"## Batches: ns per message, K=4, {s['batch']:,} messages", ""]
    lines += [_row(["case", "ns/message"]), _row(["---", "---:"])]
    for name, ns in batches.items():
        lines.append(_row([name, f"{ns:,.0f}"]))
    return lines


def messages_table(messages: dict[str, dict[str, float]], s: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## Messages: a 5-field record, strings shared ({s['memory_objects']:,} objects for bytes)",
        "",
    ]
    lines += [
        _row(["maker", "ns/object", "vs baseline", "bytes/object"]),
        _row(["---", "---:", "---:", "---:"]),
    ]
    base = messages[BASE_MESSAGE]["ns"]
    for name, m in messages.items():
        lines.append(_row([name, f"{m['ns']:,.0f}", f"{m['ns'] / base:.2f}x", f"{m['bytes']:.1f}"]))
    return lines


def end_to_end_table(e2e: dict[str, float], s: dict[str, Any]) -> list[str]:
    lines = ["", f"## End-to-end: {s['alerts']:,} alerts into a file database, flushed", ""]
    lines += [_row(["path", "alerts/s", "vs executemany ceiling"]), _row(["---", "---:", "---:"])]
    for name, rate in e2e.items():
        lines.append(_row([name, f"{rate:,.0f}", f"{rate / e2e[CEILING]:.0%}"]))
    return lines


def scaling_table(scaling: dict[str, Any], s: dict[str, Any]) -> list[str]:
    return _scaling_table(scaling, s["scaling_rounds"], s["scaling_window"])


def _scaling_table(scaling: dict[str, Any], rounds: int, window: float) -> list[str]:
    rates, busy_rates = scaling["rates"], scaling["busy_rates"]
    ratios, busy_ratios, of_ceiling = scaling["ratios"], scaling["busy_ratios"], scaling["busy_of_ceiling"]
    counts = sorted(rates[NOTHING_SHARED], key=int)
    more, below_all = counts[1:], counts[:-1]  # at T = cpu_count every vCPU is busy as is
    lines = ["", "## Thread scaling: alerts/s, T threads notifying through the one DatabaseConnection", ""]
    lines += [
        f"Each thread sends its own stream for {window:g} s; 4 shared observers do a little CPU "
        "work per message; alerts/s is the sum of each "
        f"thread's own rate. {rounds} interleaved rounds, each measuring every case at every T back "
        'to back; a speed-up is the median of each round\'s own ratio. "as is": nothing else runs. '
        '"busy": every vCPU is busy in every run (T threads plus cpu_count - T processes that spin '
        "and share nothing), so the clock is the same at every T: a VM can run a lone thread faster "
        "while its other vCPUs idle, which an as-is 1-thread baseline counts as a loss of "
        "scaling. The last columns divide each round's busy speed-up by the nothing-shared case's of "
        "the same round: what sharing costs, with the machine's state of the moment divided out.",
        "",
    ]
    header = [
        "case",
        *[f"T={t}" for t in counts],
        *[f"T={t} busy" for t in below_all],
        *[f"T={t} / T=1 as is" for t in more],
        *[f"T={t} / T=1 busy" for t in more],
        *[f"T={t} busy, of nothing shared" for t in more],
    ]
    lines += [_row(header), _row(["---", *["---:"] * (len(header) - 1)])]
    for case in rates:
        lines.append(
            _row(
                [
                    case,
                    *[f"{rates[case][t]:,.0f}" for t in counts],
                    *[f"{busy_rates[case][t]:,.0f}" for t in below_all],
                    *[f"{ratios[case][t]:.2f}x" for t in more],
                    *[f"{busy_ratios[case][t]:.2f}x" for t in more],
                    *[f"{of_ceiling[case][t]:.0%}" for t in more],
                ]
            )
        )
    return lines


def chart(r: dict[str, Any], path: Path) -> bool:
    try:  # an optional peer of the benchmarks, untyped where it is missing
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    fig.suptitle(f"notipipe benchmarks: {r['label']}", fontsize=10)

    def barh(ax: Any, data: dict[str, float], title: str, unit: str) -> None:
        names = list(data)
        values = [data[n] for n in names]
        colors = [
            "tab:blue" if "notipipe" in n or n.startswith(("compiled", "pure")) else "tab:gray" for n in names
        ]
        ax.barh(names, values, color=colors)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(unit)
        ax.tick_params(axis="y", labelsize=7)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:,.0f}", va="center", fontsize=7)

    barh(
        axes[0][0],
        r["fanout"]["4"],
        "fan-out of one message to 4 observers",
        "ns per message (lower is better)",
    )
    barh(
        axes[0][1],
        {n: m["ns"] for n, m in r["messages"].items()},
        "create a 5-field record",
        "ns per object (lower is better)",
    )
    barh(
        axes[1][0],
        {n: m["bytes"] for n, m in r["messages"].items()},
        "memory per record",
        "bytes per object (lower is better)",
    )
    ax = axes[1][1]
    busy = r["scaling"]["busy_rates"]
    for i, (case, rates) in enumerate(r["scaling"]["rates"].items()):
        ts = sorted(rates, key=int)
        color = f"C{i}"
        short = case.removeprefix("reference: ").split(",")[0]
        ax.plot(
            [int(t) for t in ts],
            [rates[t] for t in ts],
            marker="o",
            color=color,
            label=f"{short} (as is)",
        )
        ax.plot(
            [int(t) for t in ts], [busy[case][t] for t in ts], ls="--", color=color, label="  every vCPU busy"
        )
    ax.set_title("thread scaling through one DatabaseConnection", fontsize=10)
    ax.set_xlabel("threads")
    ax.set_ylabel("alerts/s (higher is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(r: dict[str, Any], out: Path) -> tuple[Path, Path | None]:
    md = out / f"{r['tag']}.md"
    png = out / f"{r['tag']}.png"
    drawn = chart(r, png)
    text = markdown(r)
    if drawn:
        text += f"\n![chart]({png.name})\n"
    md.write_text(text)
    return md, png if drawn else None

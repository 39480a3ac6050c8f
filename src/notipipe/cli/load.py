"""The synthetic load of ``notipipe run``: what each producer thread creates and saves."""

from __future__ import annotations

import random
from dataclasses import dataclass

from notipipe import DatabaseConnection, EmailMessage, MessageFactory, SMSMessage

__all__ = ["RunPlan", "produce_alerts"]


_RECIPIENTS = [
    f"{team}@{host}.example.com"
    for team in ("ops", "dba", "sre", "noc", "oncall")
    for host in ("eu", "us", "ap")
]
_PHONES = [f"+1555{n:07d}" for n in range(0, 15_000, 1_000)]
_CHECKS = ["cpu", "disk", "memory", "latency", "errors", "queue depth"]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What ``notipipe run`` produces: ``total`` alerts from ``threads`` threads, saved in chunks."""

    total: int
    threads: int
    mix: dict[str, float]
    chunk: int
    seed: int


def produce_alerts(
    db: DatabaseConnection, index: int, plan: RunPlan, produced: list[int], errors: list[BaseException]
) -> None:
    """Producer thread ``index``: create its share of the plan's alerts and save them.

    Progress goes to ``produced[index]`` (one slot per thread, so no lock); an exception is
    appended to ``errors`` for the main thread to raise.
    """
    try:
        threads, chunk = plan.threads, plan.chunk
        share = plan.total // threads + (1 if index < plan.total % threads else 0)
        rng = random.Random(plan.seed * 1_000_003 + index)
        email_share = plan.mix.get("email", 0.0) / sum(plan.mix.values())
        create = MessageFactory.create_message
        done = 0
        while done < share:
            n = min(chunk, share - done)
            batch: list[EmailMessage | SMSMessage] = []
            for i in range(done, done + n):
                check = _CHECKS[i % len(_CHECKS)]
                level = 50 + i % 50
                priority = 1 + i % 5
                if rng.random() < email_share:
                    batch.append(
                        create(
                            "email",
                            recipient=_RECIPIENTS[i % len(_RECIPIENTS)],
                            subject=f"{check} at {level}% on host-{i % 97}",
                            body=f"producer {index} alert {i}: {check} crossed {level}%",
                            priority=priority,
                        )
                    )
                else:
                    batch.append(
                        create(
                            "sms",
                            phone_number=_PHONES[i % len(_PHONES)],
                            body=f"{check} {level}% host-{i % 97}",
                            priority=priority,
                        )
                    )
            db.save_many(batch)
            done += n
            produced[index] = done
    except BaseException as error:  # noqa: BLE001 - re-raised by the main thread
        errors.append(error)

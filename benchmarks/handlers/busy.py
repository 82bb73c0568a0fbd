"""The co-location benchmark's handler: keeps its CPU busy for ``event["ms"]``."""

import time


def handler(event: dict[str, float], context: object) -> dict[str, int]:
    end = time.perf_counter() + event["ms"] / 1000
    spins = 0
    while time.perf_counter() < end:
        spins += 1
    return {"spins": spins}

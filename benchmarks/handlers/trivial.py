"""The benchmarks' trivial handler: imports nothing, returns a small object."""


def handler(event: dict[str, object], context: object) -> dict[str, object]:
    return {"ok": True}

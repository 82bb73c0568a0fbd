"""The supervisor half of lambda-bulkhead: the only process that talks to the
Runtime API.  It forks the template once, hands each invocation to a worker,
and posts exactly one answer per invocation whatever the worker does.
"""

from lambda_bulkhead.supervisor._supervisor import run_supervised

__all__ = ["run_supervised"]

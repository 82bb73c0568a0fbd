"""The worker half of lambda-bulkhead: the template process that loads the
handler once, and the workers it forks, each running one invocation at a time.

Nothing here talks to the Runtime API; see ``lambda_bulkhead.supervisor``.
"""

from lambda_bulkhead.handler._handler import CurrentInvocation
from lambda_bulkhead.worker._template import EXIT_LOAD_FAILED, run_template
from lambda_bulkhead.worker._worker import WorkerFds

__all__ = ["EXIT_LOAD_FAILED", "CurrentInvocation", "WorkerFds", "run_template"]

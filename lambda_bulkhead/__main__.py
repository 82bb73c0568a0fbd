"""``python -m lambda_bulkhead``: the same as the ``lambda-bulkhead`` command."""

import sys

from lambda_bulkhead._cli import main

sys.exit(main())

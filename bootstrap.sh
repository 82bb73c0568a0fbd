#!/bin/sh
# lambda-bulkhead's bootstrap: the executable Lambda starts.
#
# * provided.al2023 (zip) or a container image: package this file as
#   `bootstrap` at the root (LAMBDA_TASK_ROOT); Lambda runs it with no arguments.
# * the managed Python runtime: set AWS_LAMBDA_EXEC_WRAPPER to this file; Lambda
#   runs it with the managed bootstrap's command line as arguments, which are
#   ignored: the runtime is replaced by lambda-bulkhead on the same Python.
#
# It finds a Python >= 3.11 (BULKHEAD_PYTHON, a Python bundled in the package,
# a layer's, the managed runtime's, then PATH) and execs
# `python -m lambda_bulkhead run "$_HANDLER"`, so the runtime is PID-for-PID
# what Lambda started.  See docs/deploy.md.
set -eu

task_root="${LAMBDA_TASK_ROOT:-$(cd "$(dirname "$0")" && pwd)}"

fail() {
    echo "lambda-bulkhead bootstrap: $*" >&2
    exit 127
}

usable() {
    # A Python 3.11+ that can import lambda_bulkhead from the package or a layer.
    [ -n "$1" ] || return 1
    command -v "$1" >/dev/null 2>&1 || return 1
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

python=""
for candidate in \
    "${BULKHEAD_PYTHON:-}" \
    "$task_root/python/bin/python3" \
    "/opt/python/bin/python3" \
    "/var/lang/bin/python3" \
    python3.13 python3.12 python3.11 python3; do
    if usable "$candidate"; then
        python="$candidate"
        break
    fi
done
[ -n "$python" ] || fail "no Python >= 3.11 found (set BULKHEAD_PYTHON, bundle one in \
$task_root/python, or use a layer or the managed Python runtime)"
[ -n "${_HANDLER:-}" ] || fail "_HANDLER is not set (the function's handler setting, e.g. app.handler)"

# The package's own directory and a layer's come first, as on the managed runtime.
PYTHONPATH="$task_root:/opt/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
"$python" -c 'import lambda_bulkhead' 2>/dev/null || fail "lambda_bulkhead is not importable \
by $python (install it into $task_root with: pip install --target $task_root lambda-bulkhead)"

exec "$python" -m lambda_bulkhead run "$_HANDLER"

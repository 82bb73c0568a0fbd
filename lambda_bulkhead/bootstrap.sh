#!/bin/sh
# lambda-bulkhead's bootstrap: the executable Lambda starts.
#
# * provided.al2023 (zip) or a container image: this file is `bootstrap` at the
#   root of the package (LAMBDA_TASK_ROOT, what `lambda-bulkhead package`
#   writes); Lambda runs it with no arguments.
# * the managed Python runtime: AWS_LAMBDA_EXEC_WRAPPER names this file; Lambda
#   runs it with the managed bootstrap's command line as arguments, which are
#   ignored: the runtime is replaced by lambda-bulkhead on the same Python.
#
# It picks a Python (BULKHEAD_PYTHON if set; else the first that exists of a
# Python bundled in the package, a layer's, the managed runtime's, python3.13 …
# python3.11 and python3 on PATH) and execs it on a few lines that check the
# version, import lambda_bulkhead and run `python -m lambda_bulkhead run
# "$_HANDLER"`, so the runtime is PID-for-PID what Lambda started.
#
# Every cold start runs this, so it starts no process before its exec: the
# choice is made by path (shell built-ins only, no `$(...)`), and what only a
# Python can tell (its version, whether it can import lambda_bulkhead) is told
# by that same Python, in one line, before the runtime starts.  Every failure
# is one line on stderr and exit status 127.  See docs/deploy.md.
set -eu

fail() {
    echo "lambda-bulkhead bootstrap: $*" >&2
    exit 127
}

case "$0" in
    */*) here="${0%/*}" ;;
    *) here=. ;;
esac
case "$here" in
    /*) ;;
    .) here="$PWD" ;;
    *) here="$PWD/${here#./}" ;;
esac
task_root="${LAMBDA_TASK_ROOT:-$here}"

runnable() {
    # A path must be an executable file; a bare name is looked up on PATH.
    case "$1" in
        */*) [ -f "$1" ] && [ -x "$1" ] ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

python=""
if [ -n "${BULKHEAD_PYTHON:-}" ]; then
    runnable "$BULKHEAD_PYTHON" || fail "BULKHEAD_PYTHON=$BULKHEAD_PYTHON is not an \
executable Python"
    python="$BULKHEAD_PYTHON"
else
    for candidate in \
        "$task_root/python/bin/python3" \
        /opt/python/bin/python3 \
        /var/lang/bin/python3 \
        python3.13 python3.12 python3.11 python3; do
        if runnable "$candidate"; then
            python="$candidate"
            break
        fi
    done
fi
[ -n "$python" ] || fail "no Python found (set BULKHEAD_PYTHON, bundle one in \
$task_root/python, or use a layer or the managed Python runtime)"
[ -n "${_HANDLER:-}" ] || fail "_HANDLER is not set (the function's handler setting, e.g. app.handler)"

# The package's own directory and a layer's come first, as on the managed runtime.
PYTHONPATH="$task_root:/opt/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH

# Runs on any Python 3 (no f-strings), so that a too-old one says so; then
# it is `python -m lambda_bulkhead run "$_HANDLER"` exactly (sys.argv, __main__).
# Its first line is what `ps` shows of the runtime after the program's path.
exec "$python" -c '# lambda-bulkhead runtime, started by bootstrap
import sys
def fail(why):
    sys.stderr.write("lambda-bulkhead bootstrap: %s\n" % why)
    sys.exit(127)
if sys.version_info < (3, 11):
    fail("%s is Python %d.%d; lambda-bulkhead needs 3.11 or newer (set BULKHEAD_PYTHON, \
or use a python3.11+ runtime or layer)" % ((sys.executable,) + sys.version_info[:2]))
try:
    import lambda_bulkhead
except ModuleNotFoundError as exc:
    if exc.name != "lambda_bulkhead":
        raise
    fail("lambda_bulkhead is not importable by %s (build the package with: \
lambda-bulkhead package SRC_DIR, or pip install --target %s lambda-bulkhead)" \
% (sys.executable, sys.argv[2]))
import os, runpy
sys.argv[1:] = ["run", sys.argv[1]]
sys.path[0] = os.getcwd()
runpy.run_module("lambda_bulkhead", run_name="__main__", alter_sys=True)' "$_HANDLER" "$task_root"

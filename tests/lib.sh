# SPDX-License-Identifier: MIT
# Helpers for integration scenarios (tests/integration/*.sh). Source it first:
#   . "$(dirname "$0")/../lib.sh"
# A scenario brings up its own lab with a unique prefix, which is torn down on any exit.
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$TOP/build/bin
SLIMLAB=$BIN/slimlab
PROGS=$TOP/build/tests/progs
TEST_NAME=$(basename "$0" .sh)
# Short and unique per run, so scenarios and a developer's own lab never collide.
PREFIX=${PREFIX:-t$(( $$ % 100000 ))}
TMP=$(mktemp -d "/tmp/slim-$TEST_NAME.XXXXXX")

_cleanups=()
# cleanup CMD...: run CMD at exit, last registered first.
cleanup() { _cleanups+=("$*"); }
_run_cleanups() {
	# _ci, not i: the cleanups are eval'ed here, and one that loops over "i" must not move
	# this loop (it repeated a cleanup forever).
	local rc=$? _ci
	set +e
	for ((_ci = ${#_cleanups[@]} - 1; _ci >= 0; _ci--)); do
		eval "${_cleanups[$_ci]}" >/dev/null 2>&1
	done
	rm -rf "$TMP"
	exit $rc
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

log() { echo "[$TEST_NAME] $*"; }
fail() { echo "[$TEST_NAME] FAIL: $*" >&2; exit 1; }
skip() { echo "$*"; exit 77; }

# need_root / need_cmd CMD...: skip the scenario when the machine cannot run it.
need_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }
need_cmd() { local c; for c in "$@"; do command -v "$c" >/dev/null || skip "needs $c"; done; }

# lab_up [slimlab up options]: a lab with this scenario's prefix, removed at exit.
lab_up() {
	need_root
	cleanup "$SLIMLAB down --prefix $PREFIX"
	"$SLIMLAB" up --prefix "$PREFIX" "$@"
}

# in_ns TARGET CMD...: run CMD in h<i> or h<i>/p<j> of this lab. (Not "in": that is a reserved
# word, bash cannot define a function with that name.)
in_ns() { local t=$1; shift; "$SLIMLAB" exec --prefix "$PREFIX" "$t" -- "$@"; }
# in_slim TARGET CMD...: the same with the shim loaded.
in_slim() { local t=$1; shift; "$SLIMLAB" exec --prefix "$PREFIX" --slim "$t" -- "$@"; }
# in_sup TARGET CMD...: the same under the seccomp supervisor (slim-supervise: static, Go).
in_sup() { local t=$1; shift; "$SLIMLAB" exec --prefix "$PREFIX" --supervise "$t" -- "$@"; }
addr() { "$SLIMLAB" addr --prefix "$PREFIX" "$1"; }

# bg NAME TARGET [--slim|--supervise] CMD...: start CMD in the background in TARGET; killed at
# exit. Its output goes to $TMP/NAME.log.
bg() {
	local name=$1 target=$2; shift 2
	local slim=()
	case ${1:-} in --slim|--supervise) slim=("$1"); shift ;; esac
	"$SLIMLAB" exec --prefix "$PREFIX" "${slim[@]}" "$target" -- "$@" >"$TMP/$name.log" 2>&1 &
	local pid=$!
	eval "PID_$name=$pid"
	cleanup "kill_tree $pid"
}

# kill_tree PID: terminate a process and its descendants.
kill_tree() {
	local pid=$1 child
	for child in $(pgrep -P "$pid" 2>/dev/null); do kill_tree "$child"; done
	kill "$pid" 2>/dev/null || true
}

# wait_for SECONDS CMD...: poll CMD every 50 ms until it succeeds; fail after SECONDS.
wait_for() {
	local limit=$1; shift
	local deadline=$(( $(date +%s%N) + limit * 1000000000 ))
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s%N)" -lt "$deadline" ] || fail "timed out after ${limit}s waiting for: $*"
		sleep 0.05
	done
}

# listening TARGET PORT: true when something listens on TCP PORT in TARGET's namespace.
listening() { in_ns "$1" ss -Htln "sport = :$2" | grep -q .; }

assert_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
assert_ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }' || fail "$3: expected >= $2, got $1"; }

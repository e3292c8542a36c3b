# SPDX-License-Identifier: MIT
# Helpers for the scenarios that run the POSIX-semantics program (tests/progs/semantics.c) with and
# without the shim and compare. Source after tests/lib.sh; the scenario keeps `problems=()`.
SEM=$PROGS/semantics
# Extra environment for the client (e.g. SLIM_ROUTER_SOCKET=/nowhere); empty by default.
SUITE_ENV=()

# suite NAME TARGET [--slim] CLIENT-ARGS...: runs the semantics client; output in $TMP/NAME.out.
suite() {
	local name=$1 target=$2 slim=()
	shift 2
	if [ "$1" = --slim ]; then slim=(--slim); shift; fi
	"$SLIMLAB" exec --prefix "$PREFIX" "${slim[@]}" "$target" -- env ${SUITE_ENV[@]+"${SUITE_ENV[@]}"} \
		timeout 150 "$SEM" client "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || true
	sed "s/^/  $name: /" "$TMP/$name.out" "$TMP/$name.err"
}
# check CONTROL RUN WHAT: every case that passed in CONTROL passed in RUN, else note a problem.
check() {
	"$SEM" compare "$TMP/$1.out" "$TMP/$2.out" | sed "s/^/  $2 vs $1: /" || problems+=("$3")
}
# started NAME: the server started with `bg NAME` is listening.
started() { grep -q '^listening' "$TMP/$1.log"; }

# The proof that a suite took the slim path, not only that it matched the control: the kernel's
# counters of governed connects (the client host's router) and identified accepts (the server
# host's). slim_mark SOCK... records them; slim_took WHAT CLIENT_SOCK SERVER_SOCK notes a problem
# unless both grew since the mark.
declare -A SLIM_MARK=()
slim_count() { "$BIN/slimctl" -s "$1" --json status | jq -r ".governance.kernel.$2"; }
slim_mark() {
	local s
	for s in "$@"; do
		SLIM_MARK[$s.connect_ok]=$(slim_count "$s" connect_ok)
		SLIM_MARK[$s.accept_ok]=$(slim_count "$s" accept_ok)
	done
}
slim_took() {
	local what=$1 c=$2 s=$3 dc ds
	dc=$(($(slim_count "$c" connect_ok) - SLIM_MARK[$c.connect_ok]))
	ds=$(($(slim_count "$s" accept_ok) - SLIM_MARK[$s.accept_ok]))
	log "$what: $dc governed connects, $ds identified accepts"
	[ "$dc" -gt 0 ] && [ "$ds" -gt 0 ] || problems+=("$what: did not take the slim path")
}

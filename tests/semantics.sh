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

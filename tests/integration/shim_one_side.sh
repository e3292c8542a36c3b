#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Only one end shimmed, the semantics suite (tests/progs/semantics.c) from h1/p1 to h2/p1 against
# the control without the shim: a shimmed client with a plain server falls back to the overlay
# and keeps every semantic (and really uses the overlay: the connection is a pod socket); a plain
# client with a shimmed server works over the overlay with the right addresses on both ends.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/semantics.sh"

[ -x "$SEM" ] || skip "build/tests/progs/semantics is not built"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
need_cmd ss
lab_up
srv=$(addr h2/p1)
problems=()

# established TARGET PATTERN: ESTABLISHED TCP connections ("local peer") in TARGET matching
# PATTERN, the routers' own fabric connections (port 7471) left out.
established() {
	in_ns "$1" ss -Htn state established | awk '{print $(NF-1), $NF}' | grep -v ':7471\b' |
		grep -E "$2" || true
}

bg srv_plain h2/p1 "$SEM" server 10000
bg srv_slim h2/p1 --slim "$SEM" server 8000
for s in srv_plain srv_slim; do wait_for 10 started $s; done

suite control h1/p1 "$srv" 10000 all
log "only the client shimmed (plain server: the shim must fall back to the overlay)"
suite client_only h1/p1 --slim "$srv" 10000 all
check control client_only "only the client shimmed"
log "only the server shimmed (plain client over the overlay)"
suite server_only h1/p1 "$srv" 8000 all
check control server_only "only the server shimmed"

# Where the connections really went: a pod socket over the overlay in both cases.
for c in "client_only --slim 10000" "server_only - 8000"; do
	read -r name slim port <<<"$c"
	[ "$slim" = - ] && slim=
	bg "hold_$name" h1/p1 $slim "$SEM" client --wait-file "$TMP/go_$name" "$srv" "$port" hold,wait
	wait_for 10 grep -q '^ok hold' "$TMP/hold_$name.log"
	pod=$(established h1/p1 " ${srv//./\\.}:$port\$")
	host=$(established h1 '^198\.18\.0\.1:[0-9]+ 198\.18\.0\.2:[0-9]+$')
	log "held ($name): pod ss: [${pod//$'\n'/, }], host ss: [${host//$'\n'/, }]"
	[ -n "$pod" ] || problems+=("$name: the held connection is not a pod socket over the overlay")
	[ -z "$host" ] || problems+=("$name: a host connection 198.18.0.1 -> 198.18.0.2 exists")
	touch "$TMP/go_$name.1"
	wait_for 20 grep -Eq '^(not )?ok wait' "$TMP/hold_$name.log"
	grep -q '^ok wait' "$TMP/hold_$name.log" || problems+=("$name: $(tail -n1 "$TMP/hold_$name.log")")
done

if [ ${#problems[@]} -gt 0 ]; then
	for p in "${problems[@]}"; do log "problem: $p"; done
	fail "${#problems[@]} problem(s): ${problems[*]}"
fi
log "all checks passed"

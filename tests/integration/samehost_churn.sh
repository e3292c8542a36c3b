#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Connection churn over the same-host fast path: 10,000 short connections one after the other
# (connect, 32 bytes each way, close) from h1/p2 to an echo server in h1/p1, both shimmed. No
# connection may fail, every one must have been accelerated (the router mapped two sockets per
# connection and redirected their sends), and once the closes settle the sockhash must be empty
# again (.fastpath.entries back to what it was: nothing leaks). Prints the wall time.
# timeout: 240
. "$(dirname "$0")/../lib.sh"

CHK=$PROGS/samehost_check
N=${SAMEHOST_CHURN_N:-10000}
[ -x "$CHK" ] || skip "build/tests/progs/samehost_check is not built"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
need_cmd jq
lab_up --hosts 1 --pods 2 >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; fail "slimlab up"; }
srv=$(addr h1/p1)

ctl() { "$BIN/slimctl" -s "/run/slim/$PREFIX/h1/router.sock" "$@"; }
fastpath() { ctl --json status | jq -r ".fastpath.$1"; }
[ "$(fastpath enabled)" = true ] || fail "the router's fast path is off"
host_listener() {
	ctl --json listeners | jq -e --arg o "$srv:9000" '.listeners | any(.overlay == $o)'
}
entries_back() { [ "$(fastpath entries)" -le "$e0" ]; }

bg echo h1/p1 --slim "$CHK" server 9000
wait_for 10 grep -q '^listening' "$TMP/echo.log"
wait_for 10 host_listener
e0=$(fastpath entries) a0=$(fastpath added) r0=$(fastpath redirected) s0=$(fastpath skipped)
log "$N connections h1/p2 -> $srv:9000 (sockhash entries before: $e0)"
start=$(date +%s%N)
in_slim h1/p2 timeout 100 "$CHK" churn "$srv" 9000 "$N" >"$TMP/churn.out" 2>&1 || true
took=$((($(date +%s%N) - start) / 1000000))
cat "$TMP/churn.out"
grep -q "^churn $N connections .* 0 failed$" "$TMP/churn.out" ||
	fail "connections failed or the client did not finish: $(tail -n1 "$TMP/churn.out")"
a1=$(fastpath added) r1=$(fastpath redirected) s1=$(fastpath skipped)
log "wall time ${took} ms ($((N * 1000 / (took > 0 ? took : 1))) connections/s);" \
	"sockets mapped $((a1 - a0)), skipped $((s1 - s0)), sends redirected $((r1 - r0))"
[ $((a1 - a0)) -ge $((2 * N)) ] ||
	fail "only $((a1 - a0)) sockets mapped for $N connections (want 2 per connection)"
[ $((r1 - r0)) -ge "$N" ] || fail "only $((r1 - r0)) sends redirected for $N connections"
# Closes are asynchronous (the server's thread closes after the client's FIN): let them settle.
deadline=$(($(date +%s) + 10))
until entries_back; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "sockhash has $(fastpath entries) entries 10 s after the churn (before: $e0): leak"
	sleep 0.1
done
log "sockhash entries after: $(fastpath entries)"
if grep -q '^server not ok' "$TMP/echo.log"; then
	fail "server: $(grep -m1 '^server not ok' "$TMP/echo.log")"
fi
log "pass"

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A router killed with SIGKILL and started again (slimlab router restart) loses nothing: while it
# is down the sockets it handed out stay governed (its programs and maps are pinned); the new
# router takes back its pods and host listeners (its state file) and the connections (the
# kernel's record of them); a server whose host listener the old router made is still reached
# over slim; a connection from before the restart still works, and a policy applied after the
# restart revokes a pre-restart connection it forbids.
# timeout: 150
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/semantics.sh"
need_root
need_cmd jq bpftool
[ -x "$SEM" ] || skip "build/tests/progs/semantics is not built"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock S2=/run/slim/$PREFIX/h2/router.sock
ctl() { "$BIN/slimctl" -s "$@"; }
srv=$(addr h2/p1)
cg=$(findmnt -n -t cgroup2 -o TARGET | awk 'NR == 1')/slim/$PREFIX-h1

bg sem h2/p1 --slim "$SEM" server 8000
wait_for 10 started sem
wait_for 10 sh -c "'$BIN/slimctl' -s '$S2' listeners | grep -q ':8000 '"
listeners_before=$(ctl "$S2" --json listeners | jq -c '[.listeners[] | [.pod, .overlay, .host]]')

log "two held connections h1/p1 -> h2/p1 (one to keep, one to revoke later)"
bg keep h1/p1 --slim "$SEM" client --wait-file "$TMP/go_keep" "$srv" 8000 hold,wait
bg doomed h1/p2 --slim "$SEM" client --wait-file "$TMP/go_doomed" "$srv" 8000 hold,wait
wait_for 10 grep -q '^ok hold' "$TMP/keep.log"
wait_for 10 grep -q '^ok hold' "$TMP/doomed.log"
assert_eq "$(ctl "$S2" --json conns | jq '.conns | length')" 2 "h2's connections before"

log "h1's router killed: its programs stay attached while it is down"
kill -KILL "$(cat "/run/slim/$PREFIX/h1/router.pid")"
wait_for 5 sh -c "! '$BIN/slimctl' -s '$S1' status"
progs=$(bpftool cgroup show "$cg" 2>/dev/null | grep -c . || true)
log "  $progs program attachments on $cg with the router dead"
[ "$progs" -ge 7 ] || fail "the governance programs went with the router ($progs left)"
"$SLIMLAB" router restart --prefix "$PREFIX" h1 >/dev/null
grep -q "state taken over from the router before" "/run/slim/$PREFIX/h1/router.log" ||
	fail "h1's new router did not take the pinned state over"

log "h2's router killed and started again: pods, listeners and connections come back"
"$SLIMLAB" router restart --prefix "$PREFIX" h2 >/dev/null
assert_eq "$(ctl "$S2" --json pod list | jq -c '[.pods[].name]')" '["p1","p2"]' "h2's pods"
assert_eq "$(ctl "$S2" --json listeners | jq -c '[.listeners[] | [.pod, .overlay, .host]]')" \
	"$listeners_before" "h2's host listeners"
assert_eq "$(ctl "$S2" --json conns | jq '.conns | length')" 2 "h2's connections after"
assert_eq "$(ctl "$S1" --json conns | jq '.conns | length')" 2 "h1's connections after"

log "a new client reaches the server the old router listened for, over slim"
a0=$(ctl "$S2" --json status | jq .governance.kernel.accept_ok)
out=$(in_slim h1/p2 "$SEM" client "$srv" 8000 whoami) || fail "whoami: $out"
assert_ge "$(( $(ctl "$S2" --json status | jq .governance.kernel.accept_ok) - a0 ))" 1 \
	"identified accepts after the restart"

log "a policy applied after the restart revokes a pre-restart connection it forbids"
# h2 learns h1's pods again (h1 dials the new router within a sweep and announces them).
wait_for 10 sh -c "'$BIN/slimctl' -s '$S2' --json directory | jq -e '[.pods[] | select(.ip == \"10.244.1.2\")] | length == 1'"
cat >"$TMP/policy.json" <<'EOF'
{"policies": [{"name": "p1-only", "podSelector": {"matchLabels": {"pod": "h2-p1"}},
  "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "h1-p1"}}}]}]}]}
EOF
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/policy.json"
touch "$TMP/go_keep.1" "$TMP/go_doomed.1"
wait_for 20 grep -Eq '^(not )?ok wait' "$TMP/keep.log"
wait_for 20 grep -Eq '^(not )?ok wait' "$TMP/doomed.log"
grep -q '^ok wait' "$TMP/keep.log" || fail "the allowed pre-restart connection: $(tail -n1 "$TMP/keep.log")"
grep -q '^not ok wait' "$TMP/doomed.log" ||
	fail "the forbidden pre-restart connection still works: $(tail -n1 "$TMP/doomed.log")"
grep -q "revoked .*(pod p1, in)\|revoked .*(pod p2, out)" "/run/slim/$PREFIX/h2/router.log" \
	"/run/slim/$PREFIX/h1/router.log" || fail "no revocation logged"
log "h2's router stopped: one connect waits for it, the next ones fall back at once"
pid2=$(cat "/run/slim/$PREFIX/h2/router.pid")
kill -STOP "$pid2"
cleanup "kill -CONT $pid2"
# Connects to ports nobody listens on (h2/p2): over the overlay they are refused at once.
times=$(in_slim h1/p1 python3 -c '
import socket, sys, time
for port in (9101, 9102, 9103):
    t = time.monotonic()
    try:
        socket.create_connection(("'"$(addr h2/p2)"'", port), timeout=5)
    except OSError:
        pass
    print(int((time.monotonic() - t) * 1000))')
kill -CONT "$pid2"
log "  connect times (ms) with h2's router stopped: ${times//$'\n'/ }"
for t in $(tail -n 2 <<<"$times"); do
	[ "$t" -lt 300 ] || fail "a connect to a stalled node's pod took $t ms"
done
log "ok"

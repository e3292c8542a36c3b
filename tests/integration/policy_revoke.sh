#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Live revocation: established slim connections that a new policy forbids are torn down at both
# ends within 100 ms of `slimlab policy apply` returning (cross-host and same-host), while allowed
# ones are untouched: a held connection stays open and an iperf3 run on an allowed pair that spans
# the apply finishes normally. A forbidden overlay (non-shimmed) connection is reset by the
# nftables filter on its next packet.
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd iperf3 jq curl
PP=$PROGS/policy_probe
CTL=$BIN/slimctl
[ -x "$PP" ] || skip "needs $PP (make -C tests)"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"

lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
S2=/run/slim/$PREFIX/h2/router.sock
has() { grep -q -- "$2" "$TMP/$1.log"; }
nconns() { "$CTL" -s "$1" --json conns | jq '.conns | length'; }
usec() { local t=$EPOCHREALTIME; echo "${t/[.,]/}"; }

bg srv h2/p1 --slim "$PP" serve 8080
bg iperfd h2/p1 --slim iperf3 -s -4 -p 5201
bg iperfo h2/p1 iperf3 -s -4 -p 5202
wait_for 10 has srv listening
wait_for 10 sh -c "'$CTL' -s '$S2' --json listeners | jq -e '.listeners | length == 2'"
wait_for 10 sh -c "'$CTL' -s '$S2' --json directory | jq -e '[.pods[] | select(.local == false)] | length == 2'"

log "three held connections to h2/p1:8080: from h1/p1 (stays allowed), h1/p2 and h2/p2"
bg keep h1/p1 --slim "$PP" hold 10.244.2.2 8080
bg cut1 h1/p2 --slim "$PP" hold 10.244.2.2 8080
bg cut2 h2/p2 --slim "$PP" hold 10.244.2.2 8080
for h in keep cut1 cut2; do wait_for 10 has $h "^held local="; done
# h1 sees 2 (out), h2 sees 3 (in) + 1 (out, same host) once the accepts are reported.
wait_for 10 sh -c "[ \$('$CTL' -s '$S1' --json conns | jq '.conns | length') -ge 2 ]"
wait_for 10 sh -c "[ \$('$CTL' -s '$S2' --json conns | jq '.conns | length') -ge 4 ]"

# The overlay filter judges established connections by conntrack's idea of which end is the
# client, so conntrack must have seen the connection start: a policy that isolates h2/p1 (and
# allows every pod) is in force before it is set up (see docs/policy.md).
cat >"$TMP/open.json" <<'EOF'
{"policies": [{"name": "open", "podSelector": {"matchLabels": {"pod": "h2-p1"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16"}}]}]}]}
EOF
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/open.json" || fail "policy apply open"
log "an overlay (non-shimmed) iperf3 from h1/p2 to h2/p1:5202, which the next policy forbids"
wait_for 10 listening h2/p1 5202
bg ovl h1/p2 iperf3 -4 -c 10.244.2.2 -p 5202 -t 20
wait_for 10 sh -c "[ \$('$SLIMLAB' exec --prefix '$PREFIX' h2/p1 -- ss -Htn state established '( sport = :5202 )' | wc -l) -ge 2 ]"

log "an allowed iperf3 (h1/p1 -> h2/p1:5201) runs across the apply"
bg iperf h1/p1 --slim iperf3 -4 -c 10.244.2.2 -p 5201 -t 3 -J
wait_for 10 sh -c "[ \$('$CTL' -s '$S1' --json conns | jq '[.conns[] | select(.overlay_dst == \"10.244.2.2:5201\")] | length') -ge 2 ]"

cat >"$TMP/only-p1.json" <<'EOF'
{"policies": [
  {"name": "only-h1-p1", "podSelector": {"matchLabels": {"pod": "h2-p1"}},
   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "h1-p1"}}}],
                "ports": [{"port": 8080}, {"port": 5201}]}]}
]}
EOF
log "apply: h1/p2 and h2/p2 lose their connections"
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/only-p1.json" || fail "policy apply"
t0=$(usec)
wait_for 5 has cut1 "^closed at="
wait_for 5 has cut2 "^closed at="
cut1_port=$(sed -n 's/^held local=10\.244\.1\.3:\([0-9]*\)$/\1/p' "$TMP/cut1.log")
cut2_port=$(sed -n 's/^held local=10\.244\.2\.3:\([0-9]*\)$/\1/p' "$TMP/cut2.log")
wait_for 5 has srv "^closed peer=10.244.1.3:$cut1_port "
wait_for 5 has srv "^closed peer=10.244.2.3:$cut2_port "
worst=-1000000000
for line in "$(sed -n 's/^closed at=\([0-9]*\).*/\1/p' "$TMP/cut1.log")" \
	"$(sed -n 's/^closed at=\([0-9]*\).*/\1/p' "$TMP/cut2.log")" \
	"$(sed -n "s/^closed peer=10\.244\.1\.3:$cut1_port at=\([0-9]*\).*/\1/p" "$TMP/srv.log")" \
	"$(sed -n "s/^closed peer=10\.244\.2\.3:$cut2_port at=\([0-9]*\).*/\1/p" "$TMP/srv.log")"; do
	d=$((line - t0))
	((d > worst)) && worst=$d
done
log "last end saw the close $((worst / 1000)) ms after apply returned (negative: before)"
((worst < 100000)) || fail "revocation took $((worst / 1000)) ms after apply returned"
# Each router counts what it destroyed (h1: h1/p2's end, and h2: both server ends at least).
revoked() { "$SLIMLAB" exec --prefix "$PREFIX" "h$1" -- curl -sf "http://198.18.0.$1:9464/metrics" |
	awk '$1 == "slim_revocations_total" { print $2 }'; }
r1=$(revoked 1) r2=$(revoked 2)
log "slim_revocations_total: h1 $r1, h2 $r2"
assert_ge "${r1:-0}" 1 "h1's slim_revocations_total"
assert_ge "${r2:-0}" 1 "h2's slim_revocations_total"
# The end whose router destroys its socket sees ECONNABORTED (tcp_abort), the other a reset.
for h in cut1 cut2; do
	grep -Eq "how=(ECONNABORTED|ECONNRESET|EPIPE|eof)" "$TMP/$h.log" || fail "$h: $(cat "$TMP/$h.log")"
done

log "the overlay connection is reset by the nftables filter on its next packet"
wait_for 3 sh -c "! kill -0 $PID_ovl 2>/dev/null"
log "  overlay iperf3 ended $(( ($(usec) - t0) / 1000 )) ms after apply returned (at most)"
wait "$PID_ovl" && fail "the forbidden overlay iperf3 ran to completion: $(tail -3 "$TMP/ovl.log")"

log "the allowed connection and the iperf3 run are untouched"
wait_for 15 sh -c "! kill -0 $PID_iperf 2>/dev/null"
wait "$PID_iperf" || fail "iperf3 failed: $(tail -5 "$TMP/iperf.log")"
jq -e '.end.sum_received.bytes > 0 and (.error == null)' "$TMP/iperf.log" >/dev/null ||
	fail "iperf3: $(jq -c '.error, .end.sum_received' "$TMP/iperf.log")"
has keep "^closed" && fail "the allowed connection was closed: $(cat "$TMP/keep.log")"
kill -0 "$PID_keep" || fail "the allowed holder exited"
[ "$(in_slim h1/p1 "$PP" connect 10.244.2.2 8080 block)" = connected ] || fail "h1/p1 new connect"
[[ "$(in_slim h1/p2 "$PP" connect 10.244.2.2 8080 block)" == refused* ]] || fail "h1/p2 new connect"
log "ok"

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Connection setup through the routers of a 2-host lab, without the shim: a test client speaks
# the shim's protocol (tests/progs/router_client): a governed socket from the pool, connected in
# the client's own process. Checks the host listener, cross-host (a miss asks the router, which
# asks h2; then the kernel's route map answers alone) and same-host connects, the overlay names
# the kernel gives both ends, the conns listing learnt from the kernel (and that it forgets closed
# connections), FALLBACK for a port without a slim listener and for unregistered namespaces, pod
# del, and that control commands need root outside pods.
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
RC=$PROGS/router_client
CTL=$BIN/slimctl
[ -x "$RC" ] || skip "needs $RC (make -C tests)"
[ -x "$CTL" ] && [ -x "$BIN/slimrouterd" ] || skip "needs slimctl and slimrouterd (make)"

lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
S2=/run/slim/$PREFIX/h2/router.sock
ctl1() { "$CTL" -s "$S1" "$@"; }
ctl2() { "$CTL" -s "$S2" "$@"; }
has() { grep -q -- "$2" "$TMP/$1.log"; }
# inside TARGET CMD...: run CMD in h<i> or h<i>/p<j> (lib.sh's `in` cannot be defined: bash
# reads `in` as a keyword there).
inside() { local t=$1; shift; "$SLIMLAB" exec --prefix "$PREFIX" "$t" -- "$@"; }

log "host listener for 10.244.2.2:8080 in h2/p1"
bg srv h2/p1 "$RC" "$S2" listen 10.244.2.2 8080 3
wait_for 5 has srv "^listen fd host=198.18.0.2:"
host_port=$(sed -n 's/^listen fd host=198\.18\.0\.2:\([0-9]*\)$/\1/p' "$TMP/srv.log")
ctl2 listeners | grep -Eq "^p1 +10\.244\.2\.2:8080 +198\.18\.0\.2:$host_port " ||
	fail "listener table: $(ctl2 listeners)"

log "another process of the pod cannot take over the port: a LISTEN_REQ needs its own listener"
[ "$(inside h2/p1 "$RC" "$S2" claim 8080 0)" = "claim fallback" ] || fail "claim without proof"
[ "$(inside h2/p1 "$RC" "$S2" claim 8080 8090)" = "claim fallback" ] ||
	fail "claim with another port's listener"
[ "$(inside h2/p2 "$RC" "$S2" claim 8092 8092)" = "claim fd" ] || fail "claim with its own listener"
ctl2 listeners | grep -Eq "^p1 +10\.244\.2\.2:8080 +198\.18\.0\.2:$host_port " ||
	fail "the server's listener entry changed: $(ctl2 listeners)"

log "cross-host connect h1/p1 -> 10.244.2.2:8080 (a miss: h1's router asks h2's)"
bg cli h1/p1 "$RC" "$S1" connect 10.244.2.2 8080 hello 3000
wait_for 5 has cli "^echo hello"
grep -Eq "^connect local=10\.244\.1\.2:[0-9]+ routed=1$" \
	"$TMP/cli.log" || fail "connect: $(cat "$TMP/cli.log")"
local_port=$(sed -n 's/^connect local=10\.244\.1\.2:\([0-9]*\) .*/\1/p' "$TMP/cli.log")
wait_for 5 has srv "^accepted src=10.244.1.2:$local_port dst=10.244.2.2:8080$"

log "both routers list the connection while it is open"
wait_for 5 sh -c "'$CTL' -s '$S1' conns | grep -Eq '^10\.244\.1\.2:$local_port +10\.244\.2\.2:8080 +198\.18\.0\.1:$local_port +198\.18\.0\.2:$host_port +p1 +out +tcp$'"
wait_for 5 sh -c "'$CTL' -s '$S2' conns | grep -Eq '^10\.244\.1\.2:$local_port +10\.244\.2\.2:8080 +198\.18\.0\.2:$host_port +198\.18\.0\.1:$local_port +p1 +in +tcp$'"
ctl1 --json conns | jq -e '.conns | length == 1' >/dev/null || fail "h1 conns: $(ctl1 --json conns)"

log "and forgets it after close"
wait_for 10 sh -c "! kill -0 $PID_cli 2>/dev/null"
wait_for 10 sh -c "'$CTL' -s '$S1' --json conns | jq -e '.conns | length == 0'"
wait_for 10 sh -c "'$CTL' -s '$S2' --json conns | jq -e '.conns | length == 0'"

log "same-host connect h2/p2 -> 10.244.2.2:8080 (the local listener is in the route map already)"
out=$(inside h2/p2 "$RC" "$S2" connect 10.244.2.2 8080 samehost)
echo "$out" | grep -Eq "^connect local=10\.244\.2\.3:[0-9]+ routed=0$" ||
	fail "same-host connect: $out"
echo "$out" | grep -q "^echo samehost$" || fail "same-host echo: $out"
wait_for 5 has srv "^accepted src=10.244.2.3:[0-9]* dst=10.244.2.2:8080$"

log "second cross-host connect: the kernel's route map answers, no router on the path"
out=$(inside h1/p1 "$RC" "$S1" connect 10.244.2.2 8080 again)
echo "$out" | grep -Eq "^connect local=10\.244\.1\.2:[0-9]+ routed=0$" ||
	fail "cached connect: $out"
echo "$out" | grep -q "^echo again$" || fail "cached echo: $out"

log "FALLBACK: a port with no slim listener, remote and local"
[ "$(inside h1/p1 "$RC" "$S1" connect 10.244.2.2 9999)" = "connect fallback" ] || fail "remote 9999"
[ "$(inside h1/p1 "$RC" "$S1" connect 10.244.1.3 9999)" = "connect fallback" ] || fail "local 9999"
[ "$(inside h1/p1 "$RC" "$S1" connect 10.244.9.9 80)" = "connect fallback" ] || fail "no owner"

log "the server exited after 3 connections: its listener entry goes, connects fall back"
wait_for 10 sh -c "! kill -0 $PID_srv 2>/dev/null"
wait_for 5 sh -c "'$CTL' -s '$S2' --json listeners | jq -e '.listeners | length == 0'"
[ "$(inside h2/p2 "$RC" "$S2" connect 10.244.2.2 8080)" = "connect fallback" ] || fail "after close"

log "h2 drops the dead listener and tells h1 (INVALIDATE): h1's connect falls back"
# h2 notices within its 2 s sweep; until then h1's route is refused (and the kernel tells h1's
# router, which drops it).
deadline=$((SECONDS + 5))
while :; do
	out=$(inside h1/p1 "$RC" "$S1" connect 10.244.2.2 8080) || true
	[ "$out" = "connect fallback" ] && break
	echo "$out" | grep -q "^error: connect: Connection refused" ||
		fail "a stale route must be refused or fall back: $out"
	[ $SECONDS -lt $deadline ] || fail "still no fallback after 5 s: $out"
	sleep 0.2
done

log "FALLBACK for callers outside registered pods"
[ "$(inside h1 "$RC" "$S1" connect 10.244.2.2 8080)" = "connect fallback" ] || fail "host netns"
ctl1 pod del --name p2 | grep -q "^pod p2 deleted" || fail "pod del"
out=$(inside h1/p2 "$RC" "$S1" listen 10.244.1.3 8080)
[ "$out" = "listen fallback" ] || fail "deleted pod listen: $out"
ctl1 pod add --netns "/run/netns/$PREFIX-h1-p2" --ip 10.244.1.3 --name p2 --label a=b |
	grep -q "^pod p2 added" || fail "pod re-add"
ctl1 pod list | grep -Eq "^p2 +10\.244\.1\.3 +0 +/run/netns/$PREFIX-h1-p2 +a=b$" ||
	fail "pod list: $(ctl1 pod list)"

log "a listing larger than one message arrives in fragments"
labels=()
for i in $(seq 1000); do labels+=(--label "key$i=$(printf 'v%.0s' $(seq 60))"); done
ctl1 pod del --name p2 >/dev/null
ctl1 pod add --netns "/run/netns/$PREFIX-h1-p2" --ip 10.244.1.3 --name p2 "${labels[@]:0:1000}" >/dev/null
ctl1 pod del --name p1 >/dev/null
ctl1 pod add --netns "/run/netns/$PREFIX-h1-p1" --ip 10.244.1.2 --name p1 "${labels[@]:1000}" >/dev/null
# The router sends compact JSON: more than 64 KiB of it needs several CTL_REP fragments.
size=$(ctl1 --json pod list | jq -c . | wc -c)
assert_ge "$size" 66000 "pod list size"
assert_eq "$(ctl1 --json pod list | jq '[.pods[].labels | length] | add')" 1000 "labels listed"

log "pod add validation"
expect_ctl_error() {
	local want=$1 err; shift
	if err=$(ctl1 "$@" 2>&1); then fail "slimctl $* succeeded"; fi
	echo "$err" | grep -q -- "$want" || fail "slimctl $*: expected '$want', got '$err'"
}
expect_ctl_error "ip 10.244.1.2 is already pod p1" pod add --netns "/run/netns/$PREFIX-h1-p2" --ip 10.244.1.2
expect_ctl_error "name p1 is already taken" pod add --netns "/run/netns/$PREFIX-h1-p2" --ip 10.244.1.50 --name p1
expect_ctl_error "is already pod p2" pod add --netns "/run/netns/$PREFIX-h1-p2" --ip 10.244.1.50
expect_ctl_error "outside this node's pod_cidr" pod add --netns "/run/netns/$PREFIX-h1-p2" --ip 10.244.2.50
expect_ctl_error "is not a network namespace" pod add --netns /proc/self/ns/mnt --ip 10.244.1.50
expect_ctl_error "is the router's own network namespace" pod add --netns "/run/netns/$PREFIX-h1" --ip 10.244.1.50
expect_ctl_error "No such file" pod add --netns /run/netns/nonexistent-$PREFIX --ip 10.244.1.50
expect_ctl_error "no pod named nope" pod del --name nope
expect_ctl_error "unknown command" frobnicate

log "control commands need root and a caller outside the pods"
expect_denied() {
	local err
	if err=$("$@" 2>&1); then fail "$* succeeded"; fi
	echo "$err" | grep -q "slimctl: permission denied" || fail "$*: $err"
}
expect_denied setpriv --reuid=65534 --regid=65534 --clear-groups "$CTL" -s "$S1" status
expect_denied inside h1/p1 "$CTL" -s "$S1" status
ctl1 status | grep -Eq "^node: +h1$" || fail "status: $(ctl1 status)"
log "ok"

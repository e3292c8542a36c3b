#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The control commands are for the host's root only: root in the administrator's namespaces
# (the lab's are slimlab's own), also when it enters the host's own network namespace (where a
# CNI plugin runs: nsenter --net into h1), may use them; root inside a pod (its netns alone, or everything
# `ip netns exec` gives), root in a fresh user namespace (unshare -Urn, unshare -U -r --mount),
# root with any one other namespace of its own (mount, ipc, pid, net) and a non-root user are
# refused, and what they tried (policy apply, pod del) has no effect.
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd jq setpriv unshare nsenter
CTL=$BIN/slimctl
[ -x "$CTL" ] && [ -x "$BIN/slimrouterd" ] || skip "needs slimctl and slimrouterd (make)"

lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
# Right after up, the pid file names the router itself, already in h1's netns (the router
# writes it once started, not the lab when it launches ip netns exec).
pid=$(cat "/run/slim/$PREFIX/h1/router.pid")
assert_eq "$(readlink "/proc/$pid/ns/net")" "net:[$(stat -L -c %i "/run/netns/$PREFIX-h1")]" "router pid's netns"
assert_eq "$(readlink "/proc/$pid/exe")" "$(readlink -f "$BIN/slimrouterd")" "router pid's program"
LOG1=/run/slim/$PREFIX/h1/router.log
ctl1() { "$CTL" -s "$S1" "$@"; }

# A policy every caller can read (the denied callers must fail on permission, not on the file).
echo '{"policies": [{"name": "deny-all", "podSelector": {}, "policyTypes": ["Ingress"]}]}' \
	>"$TMP/deny.json"
echo '{"policies": []}' >"$TMP/none.json"
chmod 755 "$TMP"
chmod 644 "$TMP/deny.json" "$TMP/none.json"

log "root in the administrator's namespaces: status and policy apply work"
ctl1 status | grep -Eq "^node: +h1$" || fail "status: $(ctl1 status 2>&1)"
ctl1 policy apply "$TMP/none.json" >/dev/null || fail "policy apply as the administrator"
before=$(ctl1 --json policy show | jq -c '[.policy.origin, .policy.policies]')
pods_before=$(ctl1 --json pod list | jq -c '[.pods[].name]')
assert_eq "$pods_before" '["p1","p2"]' "pods"

# expect_denied WHAT CMD...: CMD (a slimctl invocation in some context) is refused by the router.
expect_denied() {
	local what=$1 err
	shift
	if err=$("$@" 2>&1); then fail "$what: succeeded: $err"; fi
	echo "$err" | grep -q "slimctl: permission denied" || fail "$what: $err"
	log "  $what: denied"
}
# each_context VERB ARGS...: runs `slimctl -s S1 VERB ARGS` in every context that must be refused.
each_context() {
	expect_denied "pod (slimlab exec h1/p1) $*" in_ns h1/p1 "$CTL" -s "$S1" "$@"
	expect_denied "pod netns only (nsenter --net) $*" \
		nsenter --net="/run/netns/$PREFIX-h1-p1" "$CTL" -s "$S1" "$@"
	expect_denied "unshare -Urn $*" unshare -Urn "$CTL" -s "$S1" "$@"
	expect_denied "unshare -U -r --mount $*" unshare -U -r --mount "$CTL" -s "$S1" "$@"
	expect_denied "unshare --mount $*" unshare --mount "$CTL" -s "$S1" "$@"
	expect_denied "unshare --ipc $*" unshare --ipc "$CTL" -s "$S1" "$@"
	expect_denied "unshare --pid --fork $*" unshare --pid --fork "$CTL" -s "$S1" "$@"
	expect_denied "uid 65534 $*" setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$CTL" -s "$S1" "$@"
}

log "root entering the host's own network namespace (as a CNI plugin runs) is the administrator"
nsenter --net="/run/netns/$PREFIX-h1" "$CTL" -s "$S1" status | grep -Eq "^node: +h1$" ||
	fail "status from h1's netns"
# But not in h2's: that is not this router's host.
expect_denied "another host's netns (nsenter --net h2)" \
	nsenter --net="/run/netns/$PREFIX-h2" "$CTL" -s "$S1" status

log "everyone else is refused"
each_context status
each_context policy apply "$TMP/deny.json"
each_context pod del --name p2
# An upgrade would run a binary of the caller's choice as root: /bin/true must never start.
each_context upgrade /bin/true

log "what they tried had no effect"
assert_eq "$(ctl1 --json policy show | jq -c '[.policy.origin, .policy.policies]')" "$before" \
	"policy after refused applies"
assert_eq "$(ctl1 --json pod list | jq -c '[.pods[].name]')" "$pods_before" "pods after refused deletes"
! grep -q "upgrade: started" "$LOG1" || fail "a refused caller started an upgrade"
grep -q "control request from pid [0-9]* uid 0 inside a pod: denied" "$LOG1" ||
	fail "no log line for a pod's request"
grep -q "control request from pid [0-9]* uid 65534: denied" "$LOG1" ||
	fail "no log line for a non-root request"

log "the administrator still can"
ctl1 policy apply "$TMP/deny.json" >/dev/null || fail "policy apply as the administrator"
ctl1 --json policy show | jq -e '.policy.policies == 1' >/dev/null || fail "policy not applied"
ctl1 policy apply "$TMP/none.json" >/dev/null || fail "policy apply none"
log "ok"

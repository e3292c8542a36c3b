#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The router's cluster file: `slimrouterd -n` accepts a good file and names file, field and
# problem for each bad one; a running router keeps its config when SIGHUP brings a bad file and
# takes a good one; it finds its node by local address, refuses a second router on its socket,
# replaces a stale socket file, and removes its socket on SIGTERM.
# timeout: 60
. "$(dirname "$0")/../lib.sh"
need_root
R=$BIN/slimrouterd
CTL=$BIN/slimctl
[ -x "$R" ] && [ -x "$CTL" ] || skip "needs slimrouterd and slimctl (make)"

node() { printf '{"name":"%s","fabric_ip":"%s","pod_cidr":"%s"}' "$1" "$2" "$3"; }
cluster() { # cluster FILE NODE_JSON...
	local f=$1 IFS=,; shift
	printf '{"overlay_cidr":"10.244.0.0/16","peer_port":7471,"nodes":[%s]}\n' "$*" >"$f"
}
H1=$(node h1 198.18.0.1 10.244.1.0/24)
H2=$(node h2 198.18.0.2 10.244.2.0/24)
H3=$(node h3 198.18.0.3 10.244.3.0/24)

log "-n: a good file"
cluster "$TMP/good.json" "$H1" "$H2"
out=$("$R" -n --cluster "$TMP/good.json") || fail "-n rejected a good file"
assert_eq "$out" "cluster $TMP/good.json: ok (2 nodes)" "-n output"

log "-n: each bad file names the file, the field and the problem"
bad() { # bad NAME EXPECTED-MESSAGE (the file is $TMP/NAME.json)
	local f=$TMP/$1.json out
	if out=$("$R" -n --cluster "$f" 2>&1); then fail "-n accepted $1"; fi
	assert_eq "$out" "$f: $2" "$1"
}
cluster "$TMP/overlap.json" "$H1" "$(node h2 198.18.0.2 10.244.1.128/25)"
bad overlap 'nodes[1].pod_cidr: 10.244.1.128/25 overlaps nodes[0].pod_cidr'
cluster "$TMP/outside.json" "$H1" "$(node h2 198.18.0.2 10.245.2.0/24)"
bad outside 'nodes[1].pod_cidr: 10.245.2.0/24 is outside overlay_cidr'
cluster "$TMP/badcidr.json" "$(node h1 198.18.0.1 10.244.1.0/40)"
bad badcidr 'nodes[0].pod_cidr: bad CIDR "10.244.1.0/40"'
cluster "$TMP/dupname.json" "$H1" "$(node h1 198.18.0.2 10.244.2.0/24)"
bad dupname 'nodes[1].name: duplicate name "h1" (also nodes[0])'
cluster "$TMP/dupip.json" "$H1" "$(node h2 198.18.0.1 10.244.2.0/24)"
bad dupip 'nodes[1].fabric_ip: duplicate IP 198.18.0.1 (also nodes[0])'
cluster "$TMP/missing.json" '{"name":"h1","fabric_ip":"198.18.0.1"}'
bad missing 'nodes[0].pod_cidr: missing'
cluster "$TMP/type.json" '{"name":"h1","fabric_ip":7,"pod_cidr":"10.244.1.0/24"}'
bad type 'nodes[0].fabric_ip: wrong type: expected a string, got an integer'
cluster "$TMP/unknown.json" '{"name":"h1","fabric_ip":"198.18.0.1","pod_cidr":"10.244.1.0/24","zone":"x"}'
bad unknown 'nodes[0].zone: unknown key'
echo '{"overlay_cidr":"10.244.0.0/16","nodes":[' >"$TMP/syntax.json"
if out=$("$R" -n --cluster "$TMP/syntax.json" 2>&1); then fail "-n accepted syntax.json"; fi
[[ $out == "$TMP/syntax.json:"[0-9]*:[0-9]*": "* ]] || fail "syntax error: $out"
if out=$("$R" -n --cluster "$TMP/absent.json" 2>&1); then fail "-n accepted a missing file"; fi
assert_eq "$out" "$TMP/absent.json: No such file or directory" "missing file"

log "a router in its own namespace, finding its node by address"
NS=$PREFIX-rc
cleanup "ip netns del $NS"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 198.18.0.2/32 dev lo
SOCK=$TMP/run/router.sock
# slimctl runs here, not in the router's namespaces: this shell's are the administrator's.
ADMIN=(--admin-ns "/proc/$$/ns")
cluster "$TMP/live.json" "$H1" "$H2"
ip netns exec "$NS" "$R" --socket "$SOCK" --cluster "$TMP/live.json" "${ADMIN[@]}" >"$TMP/router.log" 2>&1 &
RPID=$!
cleanup "kill $RPID"
wait_for 5 "$CTL" -s "$SOCK" status
"$CTL" -s "$SOCK" status | grep -Eq "^node: +h2$" || fail "node by address: $("$CTL" -s "$SOCK" status)"
[ "$(stat -c %a "$SOCK")" = 666 ] || fail "socket mode $(stat -c %a "$SOCK")"
nodes() { "$CTL" -s "$SOCK" --json status | jq '.nodes | length'; }
assert_eq "$(nodes)" 2 "nodes at start"

log "a second router on the same socket is refused"
if ip netns exec "$NS" "$R" --socket "$SOCK" --cluster "$TMP/live.json" --node h2 \
	>"$TMP/second.log" 2>&1; then fail "second router started"; fi
grep -q "another router answers on $SOCK" "$TMP/second.log" || fail "second: $(cat "$TMP/second.log")"

log "SIGHUP with a bad file keeps the old cluster"
cp "$TMP/overlap.json" "$TMP/live.json"
kill -HUP $RPID
wait_for 5 grep -q "reload failed, keeping the current cluster: $TMP/live.json: nodes\[1\].pod_cidr: 10.244.1.128/25 overlaps nodes\[0\].pod_cidr" "$TMP/router.log"
assert_eq "$(nodes)" 2 "nodes after a bad reload"
cluster "$TMP/live.json" "$H1" "$(node h2 198.18.0.9 10.244.2.0/24)"
kill -HUP $RPID
wait_for 5 grep -q "reload failed.*nodes\[1\].fabric_ip: this node's address cannot change" "$TMP/router.log"
assert_eq "$(nodes)" 2 "nodes after moving this node"

log "SIGHUP with a good file takes it"
cluster "$TMP/live.json" "$H1" "$H2" "$H3"
kill -HUP $RPID
wait_for 5 grep -q "reloaded $TMP/live.json: 3 nodes" "$TMP/router.log"
assert_eq "$(nodes)" 3 "nodes after a good reload"

log "SIGTERM: clean exit, socket removed"
kill -TERM $RPID
wait_for 5 sh -c "! kill -0 $RPID 2>/dev/null"
wait $RPID || fail "router exited with $?"
[ ! -e "$SOCK" ] || fail "socket left behind"

log "a stale socket file (nobody answers) is replaced"
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1])" "$SOCK"
[ -S "$SOCK" ] || fail "could not make a stale socket"
ip netns exec "$NS" "$R" --socket "$SOCK" --cluster "$TMP/live.json" "${ADMIN[@]}" >"$TMP/router2.log" 2>&1 &
RPID=$!
cleanup "kill $RPID"
wait_for 5 "$CTL" -s "$SOCK" status
kill -TERM $RPID
wait $RPID || fail "router exited with $?"

log "no node of the cluster on this host: a start-up error"
ip -n "$NS" addr del 198.18.0.2/32 dev lo
if ip netns exec "$NS" "$R" --socket "$SOCK" --cluster "$TMP/live.json" >"$TMP/none.log" 2>&1; then
	fail "started without a node"
fi
grep -q "no node of $TMP/live.json has a fabric_ip on this host" "$TMP/none.log" ||
	fail "no node: $(cat "$TMP/none.log")"
log "ok"

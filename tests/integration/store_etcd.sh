#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The cluster store (slimlab up --store etcd: Debian's etcd in the fabric namespace, routers with
# --store and a 3 s lease): 3 hosts register their nodes and pods under the documented layout and
# every router's directory has every pod; a policy and a service document applied once on one
# router reach the others within 1 s (measured), a bad one is refused and never stored; a router
# killed with -9 has its pods leave the others' directories when its lease expires; with etcd
# stopped, connections, policy and the directory stay in force and new connects still work; etcd
# restarted on the same data: the routers reconnect and a new policy propagates again.
# timeout: 150
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd jq curl
ETCD=/usr/bin/etcd
[ -x "$ETCD" ] || skip "needs $ETCD (etcd-server)"
"$ETCD" --version >/dev/null 2>&1 || skip "$ETCD does not run here: $("$ETCD" --version 2>&1 | tail -n1)"
PP=$PROGS/policy_probe
CTL=$BIN/slimctl
[ -x "$PP" ] || skip "needs $PP (make -C tests)"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"

lab_up --hosts 3 --store etcd >/dev/null
RUN=/run/slim/$PREFIX
ctl() { local i=$1; shift; "$CTL" -s "$RUN/h$i/router.sock" "$@"; }
has() { grep -q -- "$2" "$TMP/$1.log"; }
now_ms() { echo $((${EPOCHREALTIME//[.,]/} / 1000)); }
connected() { ctl "$1" --json status | jq -e '.store.connected' >/dev/null; }
disconnected() { ctl "$1" --json status | jq -e '.store.connected | not' >/dev/null; }
npods() { ctl "$1" --json directory | jq '.pods | length'; }
metric() { in_ns "h$1" curl -s --noproxy '*' "http://198.18.0.$1:9464/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
etcdctl_get() {
	if command -v etcdctl >/dev/null; then
		in_ns fabric env ETCDCTL_API=3 etcdctl --endpoints http://198.18.0.254:2379 "$@"
	fi
}
# probe TARGET IP PORT: policy_probe's one line for a shimmed blocking connect.
probe() { in_slim "$1" "$PP" connect "$2" "$3" block || true; }
# propagate FROM FIELD VALUE KIND FILE TO...: applies FILE on router FROM, then measures how long
# until every router TO shows it (FIELD of KIND show equals VALUE); fails beyond 1 s.
propagate() {
	local from=$1 jqexpr=$2 kind=$3 file=$4 out t0 i ms
	shift 4
	t0=$(now_ms)
	out=$(ctl "$from" "$kind" apply "$file") || fail "$kind apply on h$from: $out"
	[[ $out == "stored "* ]] || fail "$kind apply did not go through the store: $out"
	for i in "$@"; do
		until ctl "$i" --json "$kind" show | jq -e "$jqexpr" >/dev/null; do
			ms=$(($(now_ms) - t0))
			[ "$ms" -lt 3000 ] || fail "$kind from h$from not on h$i after $ms ms"
			sleep 0.01
		done
		ms=$(($(now_ms) - t0))
		log "  $kind from h$from in force on h$i after $ms ms"
		[ "$ms" -le 1000 ] || fail "$kind from h$from reached h$i after $ms ms (> 1 s)"
	done
}

log "every router is synced with the store and sees every pod"
for i in 1 2 3; do
	wait_for 10 connected "$i"
	wait_for 10 sh -c "[ \"\$('$CTL' -s '$RUN/h$i/router.sock' --json directory | jq '[.pods[] | select(.labels.pod != null)] | length')\" = 6 ]"
done
assert_eq "$(ctl 1 --json directory | jq -r '.pods[] | select(.ip == "10.244.3.3") | .node + " " + .name + " " + .labels.pod')" \
	"h3 p2 h3-p2" "h3/p2 as h1 sees it"
assert_eq "$(ctl 2 --json status | jq -r '.store.nodes | keys | join(",")')" "h1,h2,h3" "nodes in the store"
assert_eq "$(metric 1 slim_store_connected)" 1 "slim_store_connected on h1"
keys=$(etcdctl_get get --prefix /slim/ --keys-only | awk NF | sort | tr '\n' ' ')
if [ -n "$keys" ]; then
	assert_eq "$keys" "/slim/nodes/h1 /slim/nodes/h2 /slim/nodes/h3 /slim/pods/10.244.1.2 /slim/pods/10.244.1.3 /slim/pods/10.244.2.2 /slim/pods/10.244.2.3 /slim/pods/10.244.3.2 /slim/pods/10.244.3.3 " "the layout"
	log "  keys: $keys"
fi

log "servers on h2/p1, a long-lived connection from h1/p1"
bg srv h2/p1 --slim "$PP" serve 8080
wait_for 10 has srv listening
bg keep h1/p1 --slim "$PP" hold 10.244.2.2 8080
wait_for 10 has keep held
assert_eq "$(probe h1/p2 10.244.2.2 8080)" connected "no policy: h1/p2 -> h2/p1"

log "a policy applied once on h1 reaches h2 and h3 within 1 s"
cat >"$TMP/v1.json" <<'EOF'
{"policies": [{"name": "db-v1", "podSelector": {"matchLabels": {"pod": "h2-p1"}},
  "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "h1-p1"}}}],
               "ports": [{"protocol": "TCP", "port": 8080}]}]}]}
EOF
propagate 1 '.policy.document.policies[0].name == "db-v1"' policy "$TMP/v1.json" 1 2 3
[[ $(probe h1/p2 10.244.2.2 8080) == refused* ]] || fail "db-v1: h1/p2 -> h2/p1 not refused"
assert_eq "$(probe h1/p1 10.244.2.2 8080)" connected "db-v1: h1/p1 -> h2/p1"

log "a bad policy is refused with the usual error and never reaches the store"
echo '{"policies": [{"name": "bad", "podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.1.2.3/16"}}]}]}]}' >"$TMP/bad.json"
if out=$(ctl 1 policy apply "$TMP/bad.json" 2>&1); then fail "bad policy accepted: $out"; fi
echo "$out" | grep -qF "$TMP/bad.json: policies[0].egress[0].to[0].ipBlock.cidr: bad CIDR" ||
	fail "bad policy error: $out"
stored=$(etcdctl_get get /slim/policy --print-value-only)
[ -z "$stored" ] || echo "$stored" | grep -q db-v1 || fail "the store's policy changed: $stored"
assert_eq "$(ctl 3 --json policy show | jq -r '.policy.document.policies[0].name')" db-v1 "h3 keeps db-v1"

log "a service document applied once on h2 reaches h1 and h3 within 1 s"
cat >"$TMP/svc.json" <<'EOF'
{"services": [{"name": "web", "ip": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8080}],
  "selector": {"pod": "h2-p1"}}]}
EOF
propagate 2 '.services | length == 1' service "$TMP/svc.json" 1 2 3
wait_for 5 sh -c "'$CTL' -s '$RUN/h1/router.sock' --json service show | jq -e '.services[0].backends | length == 1'"
assert_eq "$(probe h1/p1 10.96.0.10 80)" connected "h1/p1 -> the VIP (backend h2/p1)"

log "h3's router dies (kill -9): its pods leave h1's and h2's directories when its lease expires"
pid=$(cat "$RUN/h3/router.pid")
kill -KILL "$pid"
t0=$(now_ms)
for i in 1 2; do
	until [ "$(ctl "$i" --json directory | jq '[.pods[] | select(.node == "h3")] | length')" = 0 ]; do
		[ $(($(now_ms) - t0)) -lt 10000 ] || fail "h3's pods still on h$i after 10 s"
		sleep 0.05
	done
	ms=$(($(now_ms) - t0))
	log "  h3's pods gone from h$i after $ms ms (lease ttl 3 s)"
	[ "$ms" -ge 1000 ] || fail "h3's pods gone after only $ms ms: not by lease expiry"
done
assert_eq "$(ctl 1 --json status | jq -r '.store.nodes | keys | join(",")')" "h1,h2" "nodes after h3 died"
assert_eq "$(npods 2)" 4 "h2's directory"
"$SLIMLAB" router restart --prefix "$PREFIX" h3 >/dev/null
wait_for 10 sh -c "[ \"\$('$CTL' -s '$RUN/h1/router.sock' --json directory | jq '.pods | length')\" = 6 ]"
wait_for 10 connected 3
assert_eq "$(ctl 3 --json policy show | jq -r '.policy.document.policies[0].name')" db-v1 "restarted h3 takes the policy from the store"

log "etcd stops: the last known state stays in force and slim keeps working"
"$SLIMLAB" store stop --prefix "$PREFIX" >/dev/null
for i in 1 2 3; do wait_for 5 disconnected "$i"; done
assert_eq "$(metric 1 slim_store_connected)" 0 "slim_store_connected on h1 during the outage"
# Nothing to poll for: what is checked is that nothing changes for longer than the lease's TTL.
sleep 4
for i in 1 2 3; do assert_eq "$(npods "$i")" 6 "h$i's directory during the outage"; done
kill -0 "$PID_keep" 2>/dev/null || fail "the long-lived connection died during the outage"
assert_eq "$(ctl 2 --json policy show | jq -r '.policy.document.policies[0].name')" db-v1 "h2's policy during the outage"
[[ $(probe h1/p2 10.244.2.2 8080) == refused* ]] || fail "outage: policy no longer enforced"
assert_eq "$(probe h1/p1 10.244.2.2 8080)" connected "outage: a new connect h1/p1 -> h2/p1"
assert_eq "$(probe h1/p1 10.96.0.10 80)" connected "outage: h1/p1 -> the VIP"
grep -q "store: http://198.18.0.254:2379: lost" "$RUN/h1/router.log" || fail "no log line for the outage"
nlog=$(grep -c "store: http://198.18.0.254:2379" "$RUN/h1/router.log")
[ "$nlog" -le 4 ] || fail "the outage logged $nlog lines in 5 s (not rate-limited)"

log "etcd restarts on the same data: the routers reconnect, a new policy propagates"
t0=$(now_ms)
"$SLIMLAB" store start --prefix "$PREFIX" >/dev/null
for i in 1 2 3; do
	wait_for 10 connected "$i"
	log "  h$i reconnected $(($(now_ms) - t0)) ms after etcd was started"
done
assert_eq "$(metric 2 slim_store_connected)" 1 "slim_store_connected on h2 after the outage"
for i in 1 2 3; do assert_eq "$(npods "$i")" 6 "h$i's directory after the outage"; done
sed 's/db-v1/db-v2/; s/"pod": "h1-p1"/"pod": "h1-p2"/' "$TMP/v1.json" >"$TMP/v2.json"
propagate 2 '.policy.document.policies[0].name == "db-v2"' policy "$TMP/v2.json" 1 2 3
assert_eq "$(probe h1/p2 10.244.2.2 8080)" connected "db-v2: h1/p2 -> h2/p1"
[[ $(probe h1/p1 10.244.2.2 8080) == refused* ]] || fail "db-v2: h1/p1 -> h2/p1 not refused"
log "ok"

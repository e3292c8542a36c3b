#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Services (ClusterIP), as a user and a pod see them: a shimmed client's connects to a VIP spread
# over the backends the selector picks (same host and across hosts), getpeername shows the VIP and
# the server sees the client's pod address; ClientIP affinity keeps a client on one backend; a
# service without backends refuses at once; a backend removed while connections are live has
# exactly its connections reset, promptly, and is never picked again; an added one disturbs no
# connection; policy judges the backend; a non-shimmed client goes through the nftables rules;
# a router restart keeps the services and the connections; a bad document changes nothing;
# a forged route request is not believed; 10,000 services apply and the VIPs keep working.
# timeout: 240
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd jq nft
SC=$PROGS/svc_check
CTL=$BIN/slimctl
[ -x "$SC" ] || skip "needs $SC (make -C tests)"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"

lab_up --pods 3 >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
S2=/run/slim/$PREFIX/h2/router.sock
usec() { local t=$EPOCHREALTIME; echo "${t/[.,]/}"; }
# share JSON IP: the fraction of connects that reached IP, in percent.
share() { jq -r --arg ip "$2" '((.backends[$ip] // 0) * 100 / .connects) | floor' <<<"$1"; }

# Backends: h1/p2 (10.244.1.3, same host as the client h1/p1), h2/p1 (10.244.2.2), h2/p2
# (10.244.2.3); h2/p3 (10.244.2.4) serves too but is not labelled yet.
for t in h1/p2 h2/p1 h2/p2 h2/p3; do
	bg "srv_${t/\//_}" "$t" --slim "$SC" serve 8080
done
for t in h1/p2 h2/p1 h2/p2 h2/p3; do wait_for 10 listening "$t" 8080; done
wait_for 10 sh -c "'$CTL' -s '$S2' --json listeners | jq -e '.listeners | length == 3'"
for t in h1/p2 h2/p1 h2/p2; do "$SLIMLAB" label --prefix "$PREFIX" "$t" app=web; done
wait_for 10 sh -c "'$CTL' -s '$S1' --json directory | jq -e '[.pods[] | select(.labels.app == \"web\")] | length == 3'"

cat >"$TMP/svc.json" <<'EOF'
{"services": [
  {"name": "web", "ip": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8080}],
   "selector": {"app": "web"}},
  {"name": "db", "ip": "10.96.0.11", "ports": [{"port": 5432, "targetPort": 8080}],
   "endpoints": ["10.244.2.2", "10.244.1.3", "10.244.2.3"], "sessionAffinity": "ClientIP"},
  {"name": "empty", "ip": "10.96.0.12", "ports": [{"port": 80}], "selector": {"app": "none"}}
]}
EOF
"$SLIMLAB" service apply --prefix "$PREFIX" "$TMP/svc.json" || fail "service apply"
"$CTL" -s "$S1" service show
n=$("$CTL" -s "$S1" --json service show | jq '[.services[] | select(.name == "web")][0].backends | length')
assert_eq "$n" 3 "web's backends on h1"

log "600 connects from h1/p1 to web (10.96.0.10:80) spread over its 3 backends"
out=$(in_slim h1/p1 "$SC" spread 10.96.0.10 80 600) || fail "spread: $out"
log "  $out"
for b in 10.244.1.3 10.244.2.2 10.244.2.3; do
	s=$(share "$out" $b)
	((s >= 20 && s <= 47)) || fail "backend $b got $s% of the connects (20-47% expected)"
done
assert_eq "$(jq -r '.peer_mismatch' <<<"$out")" 0 "getpeername shows the VIP"
assert_eq "$(jq -c '.client_seen_as' <<<"$out")" '["10.244.1.2"]' "servers see the client pod"
st=$("$CTL" -s "$S1" --json status | jq '.governance.kernel.connect_service')
log "  the kernel picked a backend for $st connects"
assert_ge "$st" 600 "connects the kernel sent to a backend"

log "a hostile pod: forged route requests for a VIP are not believed, the router stays"
out=$(in_ns h1/p3 "$PROGS/router_client" "$S1" forge-vip 10.96.0.10 80) || fail "forge: $out"
assert_eq "$out" "forge ok" "forged route requests for a VIP"
out=$(in_slim h1/p3 "$SC" spread 10.96.0.10 80 20) || fail "spread after the forgeries: $out"

log "ClientIP affinity: 100 connects from h1/p1 to db stay on one backend"
out=$(in_slim h1/p1 "$SC" spread 10.96.0.11 5432 100) || fail "affinity spread: $out"
assert_eq "$(jq '.backends | length' <<<"$out")" 1 "db backends reached by one client"

log "a service without backends refuses at once"
if in_slim h1/p1 "$SC" once 10.96.0.12 80 >"$TMP/once.out" 2>"$TMP/once.err"; then
	fail "connect to a service without backends succeeded"
fi
grep -q ECONNREFUSED "$TMP/once.out" || fail "expected ECONNREFUSED, got: $(cat "$TMP/once.out")"
ms=$(sed -n 's/^connect_ms=//p' "$TMP/once.err")
awk -v m="$ms" 'BEGIN { exit !(m < 100) }' || fail "refusal took $ms ms"

log "a client without the shim (h1/p3) goes through the nftables rules"
out=$(in_ns h1/p3 "$SC" spread 10.96.0.10 80 60) || fail "overlay spread: $out"
log "  $out"
assert_ge "$(jq '.backends | length' <<<"$out")" 2 "backends reached over the overlay"
# One generation of the table (router/svcnft.c), hooked in: the old one is gone.
tables=$(in_ns h1 nft list tables | grep -o 'slim_svc[_0-9]*' | tr '\n' ' ')
[[ $tables =~ ^slim_svc_[01]\ $ ]] || fail "h1's service tables: '$tables' (want one of slim_svc_0/1)"
in_ns h1 nft list chain ip "${tables% }" prerouting | grep -q 'vmap @service_ips' ||
	fail "h1's table ${tables% } is not hooked in"

log "removal during live connections: 30 held, h2/p2 loses its label"
bg hold h1/p1 --slim "$SC" hold 10.96.0.10 80 30 6
wait_for 15 grep -q READY "$TMP/hold.log"
# The mark: svc_check itself (not slimlab's shell around it) times failures from here.
pkill -USR2 -f "^$SC hold 10.96.0.10" || fail "no svc_check hold to mark"
t0=$(usec)
"$SLIMLAB" label --prefix "$PREFIX" h2/p2 app-
t1=$(usec)
wait "$PID_hold" || true
res=$(grep '^{' "$TMP/hold.log" | tail -n1)
[ -n "$res" ] || fail "hold printed no result: $(cat "$TMP/hold.log")"
on_removed=$(jq '[.conns[] | select(.backend == "10.244.2.3")] | length' <<<"$res")
reset=$(jq '[.conns[] | select(.backend == "10.244.2.3" and .failed)] | length' <<<"$res")
others_failed=$(jq '[.conns[] | select(.backend != "10.244.2.3" and .failed)] | length' <<<"$res")
slowest=$(jq '[.conns[] | select(.failed) | .since_mark_ms] | max // 0' <<<"$res")
log "  $on_removed on the removed backend, $reset reset (the last $slowest ms after the mark;" \
	"the label change took $(((t1 - t0) / 1000)) ms), $others_failed others failed"
((on_removed > 0)) || fail "no held connection on h2/p2 (spread broken?)"
assert_eq "$reset" "$on_removed" "connections to the removed backend reset"
assert_eq "$others_failed" 0 "connections to the other backends untouched"
# SOCK_DESTROY aborts the client's socket (ECONNABORTED); the backend's gets the reset.
errs=$(jq -r '[.conns[] | select(.failed) | .errno] | unique | join(",")' <<<"$res")
[[ $errs =~ ^(ECONNABORTED|ECONNRESET)(,(ECONNABORTED|ECONNRESET))?$ ]] ||
	fail "the removed ones failed with $errs, not an abort or a reset"
# The mark is taken just before the label change: the reset follows within 100 ms of its answer.
((slowest <= (t1 - t0) / 1000 + 100)) || fail "reset $slowest ms after the mark"
out=$(in_slim h1/p1 "$SC" spread 10.96.0.10 80 150) || fail "spread after removal: $out"
assert_eq "$(share "$out" 10.244.2.3)" 0 "new connects to the removed backend"

log "addition: h2/p3 joins; a held connection stays, new connects reach it"
bg hold2 h1/p1 --slim "$SC" hold 10.96.0.10 80 20 3
wait_for 15 grep -q READY "$TMP/hold2.log"
"$SLIMLAB" label --prefix "$PREFIX" h2/p3 app=web
wait "$PID_hold2" || true
res=$(grep '^{' "$TMP/hold2.log" | tail -n1)
assert_eq "$(jq '[.conns[] | select(.failed)] | length' <<<"$res")" 0 "held connections across an addition"
out=$(in_slim h1/p1 "$SC" spread 10.96.0.10 80 300) || fail "spread after addition: $out"
assert_ge "$(share "$out" 10.244.2.4)" 10 "share of the added backend"

log "policy judges the backend: h2/p1 admits nobody, its picks are refused"
cat >"$TMP/deny.json" <<'EOF'
{"policies": [{"name": "closed", "podSelector": {"matchLabels": {"pod": "h2-p1"}},
               "ingress": []}]}
EOF
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/deny.json" || fail "policy apply"
out=$(in_slim h1/p1 "$SC" spread 10.96.0.10 80 120) || true
log "  $out"
assert_eq "$(share "$out" 10.244.2.2)" 0 "connects that reached the denied backend"
assert_ge "$(jq '.error_names.ECONNREFUSED // 0' <<<"$out")" 1 "refused connects"
assert_eq "$(jq '.errors' <<<"$out")" "$(jq '.error_names.ECONNREFUSED // 0' <<<"$out")" \
	"every error is a refusal"
echo '{"policies": []}' >"$TMP/none.json"
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/none.json" || fail "policy reset"

log "a router restart (kill -9) keeps the services: the state file has the document"
bg hold3 h1/p1 --slim "$SC" hold 10.96.0.10 80 10 4
wait_for 15 grep -q READY "$TMP/hold3.log"
"$SLIMLAB" router restart --prefix "$PREFIX" h1 >/dev/null
assert_eq "$("$CTL" -s "$S1" --json service show | jq '.services | length')" 3 "services after a restart"
# The other node's pods come back as it announces them again (docs/services.md, "Limits").
wait_for 10 sh -c "'$CTL' -s '$S1' --json service show | jq -e '[.services[] | select(.name == \"web\")][0].backends | length == 3'"
out=$(in_slim h1/p1 "$SC" spread 10.96.0.10 80 60) || fail "spread after a restart: $out"
assert_eq "$(jq '.backends | length' <<<"$out")" 3 "backends reached after a restart"
wait "$PID_hold3" || true
res=$(grep '^{' "$TMP/hold3.log" | tail -n1)
assert_eq "$(jq '[.conns[] | select(.failed)] | length' <<<"$res")" 0 "held connections across the restart"

log "a bad document names file, path and problem, and changes nothing"
sed 's/"10.96.0.12"/"10.97.0.12"/' "$TMP/svc.json" >"$TMP/bad.json"
if "$CTL" -s "$S1" service apply "$TMP/bad.json" 2>"$TMP/bad.err"; then fail "bad document applied"; fi
grep -q "bad.json: services\[2\].ip: 10.97.0.12 is outside service_cidr" "$TMP/bad.err" ||
	fail "error message: $(cat "$TMP/bad.err")"
assert_eq "$("$CTL" -s "$S1" --json service show | jq '.services | length')" 3 "services kept"

log "10,000 services"
jq -n '{services: ([range(0; 10000) | {name: "s\(.)", ip: "10.96.\(100 + (. / 250 | floor)).\(. % 250 + 1)",
	ports: [{port: 80, targetPort: 8080}], selector: {app: "web"}}] +
	[{name: "web", ip: "10.96.0.10", ports: [{port: 80, targetPort: 8080}], selector: {app: "web"}}])}' \
	>"$TMP/big.json"
t0=$(usec)
"$CTL" -s "$S1" service apply "$TMP/big.json" | tee "$TMP/big.out"
t1=$(usec)
log "  applied on h1 in $(((t1 - t0) / 1000)) ms (slimctl included)"
assert_eq "$("$CTL" -s "$S1" --json service show | jq '.services | length')" 10001 "services in force"
out=$(in_slim h1/p1 "$SC" spread 10.96.139.250 80 30) || fail "spread to a VIP among 10,000: $out"
out=$(in_slim h1/p1 "$SC" spread 10.96.0.10 80 30) || fail "spread to web among 10,000: $out"
log "ok"

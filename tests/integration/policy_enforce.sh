#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Network policy at connection setup, with the real shim and a plain app (policy_probe): allow
# and deny by pod labels (ingress, cross-host and same-host) and by CIDR (egress), ports; a denied
# connect fails promptly with ECONNREFUSED for blocking and non-blocking sockets; the server's
# router refuses on its own (policy only on h2); a bad file is refused with file, JSON path and
# problem and the old policy stays; the overlay path (no shim) is refused by the nftables filter
# exactly when the shimmed connect is refused by the router; slimrouterd -n --policy checks a file.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd nft jq
PP=$PROGS/policy_probe
CTL=$BIN/slimctl
[ -x "$PP" ] || skip "needs $PP (make -C tests)"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"

log "slimrouterd -n --policy validates the file like policy apply does"
echo '{"policies": [{"name": "x", "podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.1.2.3/16"}}]}]}]}' >"$TMP/start.json"
if out=$("$BIN/slimrouterd" -n --policy "$TMP/start.json" 2>&1); then fail "bad start-up policy accepted: $out"; fi
echo "$out" | grep -qF "$TMP/start.json: policies[0].egress[0].to[0].ipBlock.cidr: bad CIDR" ||
	fail "start-up policy error: $out"

lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
S2=/run/slim/$PREFIX/h2/router.sock
ctl1() { "$CTL" -s "$S1" "$@"; }
ctl2() { "$CTL" -s "$S2" "$@"; }
has() { grep -q -- "$2" "$TMP/$1.log"; }

# probe TARGET slim|plain IP PORT block|nonblock: prints policy_probe's one line.
probe() {
	local t=$1 mode=$2; shift 2
	if [ "$mode" = slim ]; then
		in_slim "$t" "$PP" connect "$@" || true
	else
		in_ns "$t" "$PP" connect "$@" || true
	fi
}
# expect WHAT RESULT TARGET MODE IP PORT: RESULT is connected or refused (both connect kinds).
expect() {
	local what=$1 want=$2 t=$3 mode=$4 ip=$5 port=$6 kind out ms
	for kind in block nonblock; do
		out=$(probe "$t" "$mode" "$ip" "$port" "$kind")
		case $want in
		connected) [ "$out" = connected ] || fail "$what ($mode, $kind): expected connected, got '$out'" ;;
		refused)
			[[ $out == "refused "*"errno=ECONNREFUSED"* ]] ||
				fail "$what ($mode, $kind): expected ECONNREFUSED, got '$out'"
			ms=${out##*ms=}
			[ "$ms" -lt 500 ] || fail "$what ($mode, $kind): refused after $ms ms (not prompt)"
			;;
		esac
	done
	log "  $what: $want ($mode)"
}
policy() { cat >"$TMP/$1.json"; }

log "servers: h2/p1 on 8080 and 8081, h1/p1 on 8080 (shimmed; their pod listeners stay for the overlay)"
bg srv21 h2/p1 --slim "$PP" serve 8080
bg srv21b h2/p1 --slim "$PP" serve 8081
bg srv11 h1/p1 --slim "$PP" serve 8080
wait_for 10 has srv21 listening
wait_for 10 has srv21b listening
wait_for 10 has srv11 listening
wait_for 10 sh -c "'$CTL' -s '$S2' --json listeners | jq -e '.listeners | length == 2'"

log "pods know each other's labels (POD_SYNC)"
wait_for 10 sh -c "'$CTL' -s '$S1' --json directory | jq -e '[.pods[] | select(.local == false)] | length == 2'"
wait_for 10 sh -c "'$CTL' -s '$S2' --json directory | jq -e '.pods[] | select(.ip == \"10.244.1.3\" and .labels.pod == \"h1-p2\")'"

log "no policy: everything connects"
expect "h1/p2 -> h2/p1:8080" connected h1/p2 slim 10.244.2.2 8080

policy db <<'EOF'
{"policies": [
  {"name": "db", "podSelector": {"matchLabels": {"pod": "h2-p1"}},
   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "h1-p1"}}}],
                "ports": [{"protocol": "TCP", "port": 8080}]}]}
]}
EOF
log "ingress by labels and port: only h1-p1, only 8080"
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/db.json" || fail "policy apply db"
ctl2 policy show | grep -q "^policy $TMP/db.json: 1 policies, 1 rules" || fail "show: $(ctl2 policy show)"
expect "h1/p1 -> h2/p1:8080" connected h1/p1 slim 10.244.2.2 8080
expect "h1/p2 -> h2/p1:8080" refused h1/p2 slim 10.244.2.2 8080
expect "h1/p1 -> h2/p1:8081" refused h1/p1 slim 10.244.2.2 8081
expect "h2/p2 -> h2/p1:8080 (same host)" refused h2/p2 slim 10.244.2.2 8080
expect "h2/p1 -> h1/p1:8080 (unselected server)" connected h2/p1 slim 10.244.1.2 8080
log "the overlay path (no shim) is refused by nftables exactly where the router refuses"
expect "h1/p1 -> h2/p1:8080" connected h1/p1 plain 10.244.2.2 8080
expect "h1/p2 -> h2/p1:8080" refused h1/p2 plain 10.244.2.2 8080
expect "h1/p1 -> h2/p1:8081" refused h1/p1 plain 10.244.2.2 8081
expect "h2/p2 -> h2/p1:8080 (same host, bridged)" refused h2/p2 plain 10.244.2.2 8080
expect "h2/p1 -> h1/p1:8080 (unselected server)" connected h2/p1 plain 10.244.1.2 8080
# Captured first: grep -q stops reading at the match, and nft's SIGPIPE would fail the pipeline.
table=$(in_ns h2 nft list table inet slim)
grep -q "10.244.2.2 . 10.244.1.2 . tcp . 8080" <<<"$table" || fail "nft set: $table"

policy egress <<'EOF'
{"policies": [
  {"name": "out", "podSelector": {"matchLabels": {"pod": "h1-p2"}}, "policyTypes": ["Egress"],
   "egress": [{"to": [{"ipBlock": {"cidr": "10.244.2.0/24"}}], "ports": [{"port": 8080, "endPort": 8080}]}]}
]}
EOF
log "egress by CIDR (h1-p2 may reach 10.244.2.0/24:8080 only); the ingress policy is gone"
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/egress.json" || fail "policy apply egress"
for mode in slim plain; do
	expect "h1/p2 -> h2/p1:8080" connected h1/p2 $mode 10.244.2.2 8080
	expect "h1/p2 -> h2/p1:8081" refused h1/p2 $mode 10.244.2.2 8081
	expect "h1/p2 -> h1/p1:8080 (same host)" refused h1/p2 $mode 10.244.1.2 8080
	expect "h1/p1 -> h2/p1:8081 (unselected client)" connected h1/p1 $mode 10.244.2.2 8081
done

log "a bad file is refused with file, JSON path and problem; the old policy stays"
policy bad <<'EOF'
{"policies": [{"name": "x", "podSelector": {}, "ingress": [{"ports": [{"port": 99999}]}]}]}
EOF
if out=$(ctl1 policy apply "$TMP/bad.json" 2>&1); then fail "bad file accepted: $out"; fi
[ "$out" = "slimctl: $TMP/bad.json: policies[0].ingress[0].ports[0].port: port 99999 out of 1-65535" ] ||
	fail "bad file error: $out"
echo '{"policies": [' >"$TMP/broken.json"
if out=$("$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/broken.json" 2>&1); then fail "broken JSON accepted"; fi
echo "$out" | grep -q "$TMP/broken.json: line 2" || fail "broken JSON error: $out"
ctl1 policy show | grep -q "^policy $TMP/egress.json: 1 policies" || fail "old policy lost: $(ctl1 policy show)"
expect "h1/p2 -> h2/p1:8081 (old policy still)" refused h1/p2 slim 10.244.2.2 8081

log "the server's router refuses on its own: a policy only h2 knows"
echo '{"policies": []}' >"$TMP/none.json"
ctl1 policy apply "$TMP/none.json" >/dev/null || fail "h1 apply none"
ctl2 policy apply "$TMP/db.json" >/dev/null || fail "h2 apply db"
in_ns h1 nft list table inet slim >/dev/null 2>&1 && fail "h1 kept its nft table with no policy"
expect "h1/p2 -> h2/p1:8080 (h1 allows, h2 refuses)" refused h1/p2 slim 10.244.2.2 8080
expect "h1/p1 -> h2/p1:8080 (both allow)" connected h1/p1 slim 10.244.2.2 8080
ctl2 --json policy show | jq -e '.policy.denied >= 1' >/dev/null || fail "h2 counted no denial"

log "an empty policy restores everything"
"$SLIMLAB" policy apply --prefix "$PREFIX" "$TMP/none.json" || fail "apply none"
expect "h1/p2 -> h2/p1:8080" connected h1/p2 slim 10.244.2.2 8080
expect "h1/p2 -> h2/p1:8080" connected h1/p2 plain 10.244.2.2 8080
in_ns h2 nft list table inet slim >/dev/null 2>&1 && fail "h2 kept its nft table"
log "ok"

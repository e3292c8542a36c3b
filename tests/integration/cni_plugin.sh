#!/usr/bin/env bash
# timeout: 120
# SPDX-License-Identifier: MIT
# cni_plugin: slim-cni's protocol, driven as a runtime drives it (CNI_* environment, config on
# stdin, host-local from /usr/lib/cni) in a lab host's network namespace, for what podman 4.3 never
# asks: VERSION; ADD's complete result (the container's MAC, sandbox, interface index, route via
# the bridge); a second ADD refused; CHECK passing, then failing once the address is gone; DEL
# twice; GC releasing only attachments the runtime no longer lists (and delegated to an IPAM
# plugin that knows GC); STATUS; the error codes of an unknown key (2), a missing namespace (3),
# an unsupported version (1) and an unreachable router (11, with nothing left behind).
. "$(dirname "$0")/../lib.sh"

need_root
need_cmd nsenter jq
[ -x "$BIN/slim-cni" ] || skip "needs $BIN/slim-cni (make)"
[ -x "$BIN/slimrouterd" ] || skip "router not built"
[ -x /usr/lib/cni/host-local ] || skip "needs /usr/lib/cni/host-local (containernetworking-plugins)"

lab_up --hosts 1 --pods 0 >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; fail "slimlab up"; }
SOCK=/run/slim/$PREFIX/h1/router.sock
for c in c1 c2; do
	cleanup "ip netns del $PREFIX-$c"
	ip netns add "$PREFIX-$c"
done

CONF=$(jq -cn --arg sock "$SOCK" --arg data "$TMP/ipam" '{
	cniVersion: "1.1.0", name: "slimnet", type: "slim-cni", routerSocket: $sock,
	args: {labels: {team: "web"}},
	ipam: {type: "host-local", ranges: [[{subnet: "10.244.1.0/24", rangeStart: "10.244.1.150"}]],
	       dataDir: $data}}')

# gcipam: host-local as a 1.1.0 IPAM plugin that knows GC would be (Debian 12's does not): it
# says so on VERSION and records the GC it is given; everything else is host-local's.
mkdir -p "$TMP/cnibin"
cat >"$TMP/cnibin/gcipam" <<EOF
#!/bin/sh
case \$CNI_COMMAND in
VERSION) echo '{"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}' ;;
GC) cat >"$TMP/cnibin/gc.in" ;;
*) exec /usr/lib/cni/host-local ;;
esac
EOF
chmod +x "$TMP/cnibin/gcipam"

# cni COMMAND ID NETNS [CONFIG]: runs the plugin in h1 as a runtime would; its stdout goes to
# $TMP/out, its exit status is returned.
cni() {
	local cmd=$1 id=$2 ns=$3 conf=${4:-$CONF}
	printf '%s' "$conf" | env CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_IFNAME=eth0 \
		CNI_NETNS="${ns:+/run/netns/$PREFIX-$ns}" CNI_PATH="$TMP/cnibin:/usr/lib/cni" \
		CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=pod-$id;SLIM_LABELS=app:demo" \
		nsenter --net="/run/netns/$PREFIX-h1" "$BIN/slim-cni" >"$TMP/out" 2>"$TMP/err"
}
out() { jq -r "$1" "$TMP/out"; }
# expect_error CODE WORD COMMAND ID NETNS [CONFIG]: the plugin fails with CNI error JSON.
expect_error() {
	local code=$1 word=$2
	shift 2
	! cni "$@" || fail "$1 $2: succeeded, expected error code $code"
	assert_eq "$(out .code)" "$code" "$1 $2: error code ($(out .msg))"
	[[ $(out .msg) == *"$word"* ]] || fail "$1 $2: message '$(out .msg)' lacks '$word'"
	log "$1 $2: code $code: $(out .msg)"
}
veths() {
	in_ns h1 ip -j link show | jq -r '[.[].ifname | select(startswith("slim"))] | join(" ")'
}
reserved() { find "$TMP/ipam/slimnet" -name '10.*' -printf '%f\n' 2>/dev/null | sort | xargs; }
pods() { "$BIN/slimctl" -s "$SOCK" --json pod list | jq -r '[.pods[].name] | sort | join(" ")'; }
assert_clean() {
	assert_eq "$(veths)" "$1" "$2: host veths"
	assert_eq "$(reserved)" "$3" "$2: host-local reservations"
	assert_eq "$(pods)" "$4" "$2: router pods"
}

cni VERSION "" "" '{"cniVersion": "1.0.0"}' || fail "VERSION"
assert_eq "$(out '.supportedVersions | index("1.0.0") != null and index("1.1.0") != null')" \
	true "VERSION lists 1.0.0 and 1.1.0"

# ADD: the complete result.
cni ADD k1 c1 || fail "ADD k1: $(cat "$TMP/out" "$TMP/err")"
log "ADD k1: $(jq -c . "$TMP/out")"
result=$(cat "$TMP/out")
mac=$(ip -n "$PREFIX-c1" -j link show eth0 | jq -r '.[0].address')
assert_eq "$(out .cniVersion)" 1.1.0 "result cniVersion"
assert_eq "$(out .interfaces[2].mac)" "$mac" "result: the container's MAC"
assert_eq "$(out .interfaces[2].sandbox)" "/run/netns/$PREFIX-c1" "result: sandbox"
assert_eq "$(out .interfaces[2].name)" eth0 "result: container interface"
assert_eq "$(out '.interfaces[1].name | startswith("slim")')" true "result: host veth"
assert_eq "$(out .ips[0].address)" 10.244.1.150/24 "result: address"
assert_eq "$(out .ips[0].interface)" 2 "result: the address's interface index"
assert_eq "$(out '.routes[0] | "\(.dst) \(.gw)"')" "0.0.0.0/0 10.244.1.1" "result: route"
assert_eq "$(ip -n "$PREFIX-c1" -j link show eth0 | jq -r '.[0].mtu')" 1450 "container MTU"
ip netns exec "$PREFIX-c1" ping -c1 -W2 10.244.1.1 >/dev/null || fail "k1 cannot reach cni0"
pod=$("$BIN/slimctl" -s "$SOCK" --json pod list | jq -c '.pods[0]')
assert_eq "$(jq -r '"\(.name) \(.ip) \(.labels.team) \(.labels.app)"' <<<"$pod")" \
	"pod-k1 10.244.1.150 web demo" "router entry"
assert_eq "$(jq -r '.labels["cni.slim/attachment"]' <<<"$pod")" slimnet/k1/eth0 "attachment"

expect_error 5 "attached already" ADD k1 c1
# The refusal left the first attachment as it was.
assert_clean "$(jq -r .interfaces[1].name <<<"$result")" "after the refused second ADD" \
	10.244.1.150 pod-k1

# CHECK against the ADD result, then after the address is gone.
check_conf=$(jq -c --argjson r "$result" '. + {prevResult: $r}' <<<"$CONF")
cni CHECK k1 c1 "$check_conf" || fail "CHECK k1: $(cat "$TMP/out")"
ip -n "$PREFIX-c1" addr flush dev eth0
expect_error 100 "lacks 10.244.1.150/24" CHECK k1 c1 "$check_conf"

# DEL twice: both succeed, nothing is left.
cni DEL k1 c1 "$check_conf" || fail "DEL k1: $(cat "$TMP/out")"
cni DEL k1 c1 "$check_conf" || fail "second DEL k1: $(cat "$TMP/out")"
cni DEL k1 "" "$check_conf" || fail "DEL k1 without a netns: $(cat "$TMP/out")"
assert_clean "" "after DEL" "" ""

# GC: k2 and k3 attached, the runtime still has k2 only.
cni ADD k2 c1 || fail "ADD k2: $(cat "$TMP/out")"
k2ip=$(out .ips[0].address)
cni ADD k3 c2 || fail "ADD k3: $(cat "$TMP/out")"
keep=$(veths | tr ' ' '\n' | grep -c .)
assert_eq "$keep" 2 "veths of k2 and k3"
gc_conf=$(jq -c '. + {"cni.dev/valid-attachments": [{containerID: "k2", ifname: "eth0"}]}' \
	<<<"$CONF")
cni GC "" "" "$gc_conf" || fail "GC: $(cat "$TMP/out" "$TMP/err")"
log "GC: $(cat "$TMP/err")"
assert_eq "$(pods)" pod-k2 "after GC: router pods"
assert_eq "$(reserved)" "${k2ip%/*}" "after GC: reservations"
assert_eq "$(ip -n "$PREFIX-c2" -j link show | jq -r '[.[].ifname] | join(" ")')" lo \
	"after GC: k3's container has no eth0"
# Debian's host-local was not asked to GC (it does not list 1.1.0); a delegate that does is.
[ ! -e "$TMP/cnibin/gc.in" ] || fail "GC was delegated to host-local, which does not know it"
cni GC "" "" "$(jq -c '.ipam.type = "gcipam"' <<<"$gc_conf")" || fail "GC with gcipam"
assert_eq "$(jq -c '.["cni.dev/valid-attachments"]' "$TMP/cnibin/gc.in")" \
	'[{"containerID":"k2","ifname":"eth0"}]' "what the IPAM delegate's GC was given"
cni DEL k2 c1 || fail "DEL k2"
assert_clean "" "after GC and DEL" "" ""

# STATUS, and the errors.
cni STATUS "" "" || fail "STATUS: $(cat "$TMP/out")"
nosock=$(jq -c '.routerSocket = "/run/slim/none/router.sock"' <<<"$CONF")
expect_error 50 "cannot reach the router" STATUS "" "" "$nosock"
expect_error 11 "cannot reach the router" ADD k4 c1 "$nosock"
assert_clean "" "after the refused ADD" "" ""
expect_error 2 '"brigde"' ADD k5 c1 "$(jq -c '. + {brigde: "cni0"}' <<<"$CONF")"
expect_error 3 "$PREFIX-c9" ADD k6 c9
expect_error 1 "0.3.1" ADD k7 c1 "$(jq -c '.cniVersion = "0.3.1"' <<<"$CONF")"
assert_clean "" "at the end" "" ""
log "ok"

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Governed host sockets (issue 8): a pod process running as nobody gets host sockets through the
# shim (a connect to a slim server, a listen) and misuses them with raw syscalls
# (tests/progs/govern_attack): names that show the fabric, socket options the router owns,
# connect(AF_UNSPEC) then connects to h1's 127.0.0.1-only service, the peer router's fabric port
# and a host-only service of h2, bind and listen on every host socket it holds (the connected one,
# hidden listeners, pre-made pool sockets). Every attempt must be BLOCKED, the services and the
# peer router must see nothing, a listener it made must be unreachable from h2, and h1's tc, both
# nodes' nft rules and both routers' pod directories must be unchanged. Then a plain process in
# the host netns of h2, and of h1, writes a hand-made preamble claiming to be pod 10.244.1.3 to
# the slim server's host listener: the server app must never accept a connection from that peer.
# On the code before governed host sockets all of this succeeds, and the scenario fails.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd jq ss setpriv tc nft mkfifo
GA=$PROGS/govern_attack
CTL=$BIN/slimctl
[ -x "$GA" ] || skip "needs $GA (make -C tests)"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] && [ -x "$CTL" ] ||
	skip "shim, router or slimctl not built"

SRV_PORT=8080      # the slim server in h2/p1
APP_PORT=8081      # the attacker's own pod listener (gives it a hidden host listener)
LOOP_PORT=9101     # h1's service on 127.0.0.1 only
HOSTONLY_PORT=9102 # h2's service on its fabric address, outside any pod
BIND_PORT=9103     # the fixed port the attacker tries to bind
PEER_PORT=7471     # the routers' fabric port
FORGED_POD=10.244.1.3

lab_up >/dev/null
S1=/run/slim/$PREFIX/h1/router.sock
S2=/run/slim/$PREFIX/h2/router.sock
ctl1() { "$CTL" -s "$S1" "$@"; }
ctl2() { "$CTL" -s "$S2" "$@"; }
H1=$(addr h1)
H2=$(addr h2)
SRV_IP=$(addr h2/p1)
has() { grep -q -- "$2" "$TMP/$1.log"; }
count() { grep -c -- "$2" "$TMP/$1.log" || true; }

problems=()
problem() {
	problems+=("$*")
	log "PROBLEM: $*"
}

log "h1/p1 gets a QoS class (its host sockets carry the router's SO_PRIORITY)"
ctl1 pod set p1 --egress-rate 100mbit --priority 4 >/dev/null || fail "pod set p1"

log "services: slim server in h2/p1, $H2:$HOSTONLY_PORT in h2, 127.0.0.1:$LOOP_PORT in h1"
bg srv h2/p1 --slim "$GA" serve 0.0.0.0 "$SRV_PORT"
bg hostonly h2 "$GA" serve "$H2" "$HOSTONLY_PORT"
bg loop h1 "$GA" serve 127.0.0.1 "$LOOP_PORT"
wait_for 10 has srv '^listening$'
wait_for 10 has hostonly '^listening$'
wait_for 10 has loop '^listening$'
wait_for 10 sh -c "'$CTL' -s '$S2' --json listeners |
	jq -e --arg o '$SRV_IP:$SRV_PORT' '.listeners | any(.overlay == \$o)'"

# Controls: each service logs what it accepts, so its silence during the attack means something.
in_ns h1 "$GA" probe 127.0.0.1 "$LOOP_PORT" | grep -q '^connected' ||
	fail "control: h1's loopback service"
in_ns h1 "$GA" probe "$H2" "$HOSTONLY_PORT" | grep -q '^connected' ||
	fail "control: h2's host-only service"
wait_for 5 has loop '^accepted peer='
wait_for 5 has hostonly '^accepted peer='
loop0=$(count loop '^accepted peer=')
hostonly0=$(count hostonly '^accepted peer=')

# What a pod must not be able to change. Without statistics (no -s, and HTB's count of packets
# that matched no class dropped): traffic changes those, the configuration must not change.
node_state() {
	echo "== h1 tc"
	in_ns h1 tc qdisc show | sed 's/ direct_packets_stat [0-9]*//'
	in_ns h1 tc class show dev eth0
	in_ns h1 tc filter show dev eth0
	echo "== h1 nft"
	in_ns h1 nft list ruleset
	echo "== h2 nft"
	in_ns h2 nft list ruleset
	echo "== h1 directory"
	ctl1 --json directory | jq -S '.pods | sort_by(.ip)'
	echo "== h2 directory"
	ctl2 --json directory | jq -S '.pods | sort_by(.ip)'
}
node_state >"$TMP/state.before"
# The listeners h1 had before the attack, and the length of h2's router log.
listen_ports() { in_ns "$1" ss -Htln | awk '{ n = split($4, a, ":"); print a[n] }' | sort -un; }
listen_ports h1 >"$TMP/h1.ports.before"
router2_log=/run/slim/$PREFIX/h2/router.log
router2_lines=$(wc -l <"$router2_log")

log "attack: govern_attack in h1/p1 as nobody"
# --hold keeps its sockets (and any listener it made) until its stdin ends: the fifo, held open
# here on fd 7 until the listeners have been probed from h2.
mkfifo "$TMP/hold"
exec 7<>"$TMP/hold"
"$SLIMLAB" exec --prefix "$PREFIX" --slim h1/p1 -- \
	setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$GA" attack --server "$SRV_IP:$SRV_PORT" --listen "$APP_PORT" --fabric "$H1" \
	--bind-port "$BIND_PORT" --target "127.0.0.1:$LOOP_PORT" --target "$H2:$PEER_PORT" \
	--target "$H2:$HOSTONLY_PORT" --hold <"$TMP/hold" >"$TMP/attack.log" 2>&1 7>&- &
attack_pid=$!
cleanup "kill_tree $attack_pid"
attack_settled() { has attack '^DONE ' || ! kill -0 "$attack_pid" 2>/dev/null; }
wait_for 60 attack_settled
sed 's/^/    /' "$TMP/attack.log"
if ! has attack '^DONE '; then
	exec 7>&-
	fail "the attack program ended early: $(tail -n 1 "$TMP/attack.log")"
fi

log "listeners the attack made: each must be unreachable from h2"
# The ports govern_attack reported, and any port that listens in h1 now but did not before and
# is not a registered host listener of a pod (those are reachable by design).
ctl1 --json listeners | jq -r '.listeners[].host | split(":")[1]' >"$TMP/h1.ports.pods"
echo "$PEER_PORT" >>"$TMP/h1.ports.before"
{
	sed -n 's/^LISTENING .* host=[0-9.?]*:\([0-9]*\)$/\1/p' "$TMP/attack.log"
	listen_ports h1 | grep -vxF -f "$TMP/h1.ports.before" -f "$TMP/h1.ports.pods" || true
} | sort -un >"$TMP/probe.ports"
# In parallel: a pool can hold many sockets, and each unreachable port costs a 1 s timeout.
probe_from_h2() {
	local out
	if out=$(in_ns h2 "$GA" probe "$H1" "$1"); then
		echo "ALLOWED listener $H1:$1 reachable from h2: $out"
	else
		echo "BLOCKED listener $H1:$1 unreachable from h2: $out"
	fi
}
probe_pids=()
while read -r port; do
	probe_from_h2 "$port" >"$TMP/probe.$port" 2>&1 7>&- &
	probe_pids+=($!)
done <"$TMP/probe.ports"
for pid in "${probe_pids[@]}"; do wait "$pid" || true; done
while read -r port; do
	sed 's/^/    /' "$TMP/probe.$port"
	grep -q '^BLOCKED ' "$TMP/probe.$port" ||
		problem "a listener the pod made on $H1:$port is reachable from h2"
done <"$TMP/probe.ports"
exec 7>&-
attack_rc=0
wait "$attack_pid" || attack_rc=$?

allowed=$(count attack '^ALLOWED ')
blocked=$(count attack '^BLOCKED ')
tried=$((allowed + blocked + $(count attack '^LISTENING ')))
# The connected socket alone gets 17 attempts (2 names, 7 options, 3 connects, SO_BINDTODEVICE,
# 3 binds, listen): fewer means the program skipped what it should have tried.
[ "$tried" -ge 17 ] || problem "only $tried attempts reported, expected at least 17"
[ "$allowed" = 0 ] || problem "$allowed misuses ALLOWED (see the lines above)"
# 3: nothing allowed, but listen() succeeded somewhere; the probes above judged those listeners.
[ "$attack_rc" = 0 ] || [ "$attack_rc" = 3 ] || problem "govern_attack exited $attack_rc"

log "the services and the peer router saw nothing of the attack"
loop1=$(count loop '^accepted peer=')
hostonly1=$(count hostonly '^accepted peer=')
[ "$loop1" = "$loop0" ] ||
	problem "h1's 127.0.0.1:$LOOP_PORT service accepted $((loop1 - loop0)) connection(s)"
[ "$hostonly1" = "$hostonly0" ] ||
	problem "h2's $H2:$HOSTONLY_PORT service accepted $((hostonly1 - hostonly0)) connection(s)"
# The peer router logs every incoming fabric connection it closes (and every one it refuses).
tail -n +"$((router2_lines + 1))" "$router2_log" |
	grep -E 'incoming|refusing' >"$TMP/router2.new" || true
if [ -s "$TMP/router2.new" ]; then
	sed 's/^/    /' "$TMP/router2.new"
	problem "h2's router logged $(wc -l <"$TMP/router2.new") fabric connection(s)" \
		"from the pod (above)"
fi
node_state >"$TMP/state.after"
if ! diff -u "$TMP/state.before" "$TMP/state.after" >"$TMP/state.diff"; then
	sed 's/^/    /' "$TMP/state.diff"
	problem "h1's tc, a node's nft rules or a router's pod directory changed (diff above)"
fi

log "forged identity: a hand-made preamble from the host netns of h2 and h1 claims pod $FORGED_POD"
# The slim server's host listener(s): as the router lists them, else whatever listens in h2 that
# is neither the router nor the host-only service.
ctl2 --json listeners | jq -r --arg o "$SRV_IP:$SRV_PORT" \
	'.listeners[] | select(.overlay == $o) | .host' >"$TMP/forge.targets"
if [ ! -s "$TMP/forge.targets" ]; then
	in_ns h2 ss -Htln | awk '{ print $4 }' | grep -vE ":($PEER_PORT|$HOSTONLY_PORT)\$" |
		sed "s/^\(0\.0\.0\.0\|\*\):/$H2:/" >"$TMP/forge.targets" || true
fi
[ -s "$TMP/forge.targets" ] || log "  no host listener in h2 to forge to"
srv_legit0=$(count srv "^accepted peer=$(addr h1/p1):")
src_port=7
while read -r target; do
	for from in h2 h1; do
		out=$(in_ns "$from" "$GA" forge "${target%:*}" "${target##*:}" "$FORGED_POD" "$src_port" \
			"$SRV_IP" "$SRV_PORT") || true
		log "  from $from to $target as $FORGED_POD:$src_port: $out"
		src_port=$((src_port + 1))
	done
done <"$TMP/forge.targets"
# A legitimate connect after the forged ones: once the server logs it, it has accepted whatever
# was queued before it.
in_slim h1/p1 "$GA" probe "$SRV_IP" "$SRV_PORT" | grep -q '^connected' ||
	fail "control: h1/p1 -> the server"
legit_accepted() { [ "$(count srv "^accepted peer=$(addr h1/p1):")" -gt "$srv_legit0" ]; }
wait_for 10 legit_accepted
if has srv "^accepted peer=$FORGED_POD:"; then
	grep "^accepted peer=$FORGED_POD:" "$TMP/srv.log" | sed 's/^/    server: /'
	problem "the server app accepted $(count srv "^accepted peer=$FORGED_POD:")" \
		"forged connection(s) (above)"
fi

if [ ${#problems[@]} -gt 0 ]; then
	fail "${#problems[@]} problem(s): $(printf '%s; ' "${problems[@]}")"
fi
log "ok: $blocked attempts blocked, no listener reachable, nothing reached the node or the app"

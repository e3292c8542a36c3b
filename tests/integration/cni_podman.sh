#!/usr/bin/env bash
# timeout: 300
# SPDX-License-Identifier: MIT
# cni_podman: a real container runtime attaches its containers with slim-cni. podman (CNI
# backend, runc) runs containers from a plain root-filesystem directory on two lab hosts, each
# podman inside its host's network namespace with storage of its own under $TMP. The shim and
# the router socket are bind-mounted into the containers. A client container on h1 reaches a
# server container on h2 and one on h1 over slim: the server sees the client's container
# address, the router lists the connection, and neither the overlay (flannel.1) nor the
# containers' veths carried the bytes. The ADD result reached podman (its MAC is the
# container's), the pods are registered with their labels, `podman rm -f` leaves no veth, no
# host-local reservation and no router pod entry, and a container that exits is detached by
# podman's own cleanup.
#
# How podman is run here, and why:
# - `nsenter --net=/run/netns/P-h<i>`, not `ip netns exec`: ip netns exec remounts /sys for the
#   namespace, which hides the cgroup hierarchy that runc needs ("no cgroup mount found in
#   mountinfo"; `--cgroups disabled` is refused with runc), and its private mount namespace
#   would keep podman's /run/netns/netns-* mounts from the router, which opens that path to
#   identify the pod. nsenter switches only the network namespace.
# - containers.conf (CONTAINERS_CONF): network_backend "cni", cni_plugin_dirs = build/bin and
#   /usr/lib/cni, network_config_dir per host, runtime "runc" (crun fails on this host's cgroup
#   layout), cgroup_manager "cgroupfs" (no systemd), events_logger "file" (no journald).
# - --root/--runroot/--tmpdir per host under $TMP, --storage-driver vfs: runs never share
#   state and cleanup is total. --rootfs: no image, no registry.
# - --ulimit nofile=1024:1024 --ulimit nproc=1024:1024: the default open-files limit here makes
#   runc's setrlimit fail.
. "$(dirname "$0")/../lib.sh"

need_root
need_cmd podman runc nsenter jq python3
[ -x "$BIN/slim-cni" ] || skip "needs $BIN/slim-cni (make)"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
[ -x /usr/lib/cni/host-local ] || skip "needs /usr/lib/cni/host-local (containernetworking-plugins)"

NET=slimnet
BYTES=$((20 * 1000 * 1000))
t0=$(date +%s%N)
lab_up --hosts 2 --pods 0 >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; fail "slimlab up"; }
log "lab up in $((($(date +%s%N) - t0) / 1000000)) ms"

# ---------------------------------------------------------------- per-host podman

# A root filesystem of mount points only: /usr comes read-only from the host (Debian's merged
# /usr: /bin, /lib, /lib64 and /sbin are links into it), the shim and the router socket are
# bind-mounted per container.
ROOTFS=$TMP/rootfs
mkdir -p "$ROOTFS"/{usr,etc,proc,sys,dev,tmp,run,var,app}
for l in bin lib lib64 sbin; do ln -s "usr/$l" "$ROOTFS/$l"; done

# The apps: a server that reads N bytes from one connection and reports who sent them (as its
# socket API shows it), answers "ok" and waits for the client to go; a client that sends N
# bytes, reports its addresses and then holds the connection open until it is removed.
mkdir -p "$TMP/app"
cat >"$TMP/app/server.py" <<'EOF'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(1)
c, peer = s.accept()
got = 0
while got < n:
    b = c.recv(1 << 20)
    if not b:
        break
    got += len(b)
print("server got %d bytes from %s:%d" % (got, peer[0], peer[1]), flush=True)
c.sendall(b"ok")
while c.recv(4096):
    pass
print("server: client gone", flush=True)
EOF
cat >"$TMP/app/client.py" <<'EOF'
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection((host, port))
chunk, sent = b"x" * (1 << 20), 0
while sent < n:
    sent += c.send(chunk[: min(len(chunk), n - sent)])
assert c.recv(2) == b"ok"
print("client sent %d bytes from %s:%d" % ((sent,) + c.getsockname()), flush=True)
time.sleep(600)
EOF

# setup_host I: network config (slim-cni, host-local from the host's pod range, above the lab's
# own pods' addresses) and containers.conf for host I.
setup_host() {
	local i=$1 d=$TMP/h$1
	mkdir -p "$d/net.d" "$d/ipam"
	cat >"$d/net.d/$NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NET",
  "plugins": [{
    "type": "slim-cni",
    "bridge": "cni0",
    "mtu": 1450,
    "routerSocket": "/run/slim/$PREFIX/h$i/router.sock",
    "args": {"labels": {"node": "h$i"}},
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "10.244.$i.0/24", "rangeStart": "10.244.$i.100",
                   "rangeEnd": "10.244.$i.199"}]],
      "dataDir": "$d/ipam"
    }
  }]
}
EOF
	cat >"$d/containers.conf" <<EOF
[network]
network_backend = "cni"
cni_plugin_dirs = ["$BIN", "/usr/lib/cni"]
network_config_dir = "$d/net.d"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$d/events.log"
EOF
}

# pm I ARGS...: podman for host I, in its network namespace, with its own config and storage.
pm() {
	local i=$1 d=$TMP/h$1
	shift
	CONTAINERS_CONF=$d/containers.conf nsenter --net="/run/netns/$PREFIX-h$i" \
		podman --root "$d/root" --runroot "$d/runroot" --tmpdir "$d/tmp" \
		--storage-driver vfs "$@"
}

# run I NAME LABELS CMD...: a detached container NAME on host I, shimmed, with pod labels
# LABELS (k:v,k:v, passed to slim-cni in CNI_ARGS, which podman forwards).
run() {
	local i=$1 name=$2 labels=$3
	shift 3
	CNI_ARGS="SLIM_LABELS=$labels" pm "$i" run -d --name "$name" --runtime runc \
		--network "$NET" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
		-v /usr:/usr:ro -v "$TMP/app:/app:ro" \
		-v "$TOP/build/lib/libslim.so:/slim/libslim.so:ro" \
		-v "/run/slim/$PREFIX/h$i:/run/slim:ro" \
		-e LD_PRELOAD=/slim/libslim.so -e SLIM_ROUTER_SOCKET=/run/slim/router.sock \
		--rootfs "$ROOTFS" "$@" >"$TMP/run_$name.log" 2>&1 ||
		{ cat "$TMP/run_$name.log"; fail "podman run $name on h$i"; }
}

ctl() { "$BIN/slimctl" -s "/run/slim/$PREFIX/h$1/router.sock" "${@:2}"; }
ip_of() { pm "$1" inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$2"; }
logs_have() { pm "$1" logs "$2" 2>&1 | grep -q "$3"; }
host_listener() {
	ctl "$1" --json listeners | jq -e --arg o "$2" 'any(.listeners[]; .overlay == $o)'
}
# Bytes (rx + tx) of h<I>'s links whose names start with PREFIX.
link_bytes() {
	in_ns "h$1" ip -s -j link show | jq --arg p "$2" \
		'[.[] | select(.ifname | startswith($p)) | .stats64.rx.bytes + .stats64.tx.bytes] | add // 0'
}

for i in 1 2; do setup_host "$i"; done
# Cleanup before the lab goes: every container of both hosts, whatever state it is in (twice:
# see the podman 4.3 race below). A function with a local loop variable: cleanups run by eval
# inside lib.sh's runner, whose own loop variable a bare "for i" would overwrite.
pm_rm_all() {
	local h
	for h in 1 2; do pm "$h" rm -f -a -t 0 || pm "$h" rm -f -a -t 0; done
}
cleanup pm_rm_all

# ---------------------------------------------------------------- containers

t1=$(date +%s%N)
run 2 srv2 app:server,tier:db python3 /app/server.py 5001 "$BYTES"
run 1 srv1 app:server python3 /app/server.py 5002 "$BYTES"
log "2 server containers up in $((($(date +%s%N) - t1) / 1000000)) ms"
srv2=$(ip_of 2 srv2)
srv1=$(ip_of 1 srv1)
log "srv2 on h2 has $srv2, srv1 on h1 has $srv1"
[[ $srv2 == 10.244.2.1[0-9][0-9] ]] || fail "srv2 got '$srv2', not an address of h2's range"
[[ $srv1 == 10.244.1.1[0-9][0-9] ]] || fail "srv1 got '$srv1', not an address of h1's range"

# The ADD result reached podman: its MAC for the container is the container's eth0.
sandbox=$(pm 2 inspect -f '{{.NetworkSettings.SandboxKey}}' srv2)
mac_podman=$(pm 2 inspect -f '{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}' srv2)
mac_kernel=$(nsenter --net="$sandbox" ip -j link show eth0 | jq -r '.[0].address')
assert_eq "$mac_podman" "$mac_kernel" "srv2: podman's MAC vs eth0's"
mtu=$(nsenter --net="$sandbox" ip -j link show eth0 | jq -r '.[0].mtu')
assert_eq "$mtu" 1450 "srv2: eth0 MTU"
route=$(nsenter --net="$sandbox" ip -j route show default | jq -r '.[0].gateway')
assert_eq "$route" 10.244.2.1 "srv2: default route via the bridge"

# Registered with the router: name from K8S_POD_NAME (the container name), labels from the
# config's args and from CNI_ARGS, the attachment label that DEL and GC go by.
pod=$(ctl 2 --json pod list | jq -c '.pods[] | select(.name == "srv2")')
log "h2 router: $pod"
[ -n "$pod" ] || fail "srv2 is not registered with h2's router: $(ctl 2 pod list)"
assert_eq "$(jq -r .ip <<<"$pod")" "$srv2" "srv2's registered IP"
assert_eq "$(jq -r .netns <<<"$pod")" "$sandbox" "srv2's registered netns"
assert_eq "$(jq -r '.labels | "\(.app) \(.tier) \(.node)"' <<<"$pod")" "server db h2" \
	"srv2's labels"
[[ $(jq -r '.labels["cni.slim/attachment"]' <<<"$pod") == $NET/*/eth0 ]] ||
	fail "srv2 lacks the attachment label: $pod"

# Both servers are shimmed: they got host listeners.
wait_for 10 host_listener 2 "$srv2:5001"
wait_for 10 host_listener 1 "$srv1:5002"

# transfer CASE SERVER_HOST SERVER_NAME SERVER_IP PORT: a client container on h1 sends BYTES
# to the server; the bytes must go over slim.
transfer() {
	local case=$1 sh=$2 sname=$3 sip=$4 port=$5 cname=cli_$1 fl0 fl1 ve0 ve1 cip conn t
	fl0=$(link_bytes 1 flannel.1) ve0=$(link_bytes 1 slim)
	t=$(date +%s%N)
	run 1 "$cname" app:client python3 /app/client.py "$sip" "$port" "$BYTES"
	wait_for 30 logs_have 1 "$cname" "client sent $BYTES bytes"
	wait_for 10 logs_have "$sh" "$sname" "server got $BYTES bytes"
	log "$case: container started and $BYTES bytes moved in $((($(date +%s%N) - t) / 1000000)) ms"
	fl1=$(link_bytes 1 flannel.1) ve1=$(link_bytes 1 slim)
	cip=$(ip_of 1 "$cname")
	log "$case: $(pm 1 logs "$cname" 2>&1 | tail -n1)"
	log "$case: $(pm "$sh" logs "$sname" 2>&1 | tail -n1)"
	# The server's accept() names the client's container address (slim keeps overlay addresses).
	logs_have "$sh" "$sname" "server got $BYTES bytes from $cip:" ||
		fail "$case: the server did not see the client as $cip"
	# The router of h1 lists the connection (the client holds it open).
	conn=$(ctl 1 --json conns | jq -c --arg d "$sip:$port" --arg s "$cip:" '[.conns[] |
		select(.overlay_dst == $d and (.overlay_src | startswith($s)))] | .[0] // empty')
	[ -n "$conn" ] || fail "$case: h1's router does not list $cip -> $sip:$port: $(ctl 1 conns)"
	log "$case: h1 router conn: $conn"
	log "$case: h1 flannel.1 carried $((fl1 - fl0)) bytes, the containers' veths $((ve1 - ve0))"
	[ $((fl1 - fl0)) -lt $((BYTES / 100)) ] ||
		fail "$case: flannel.1 carried $((fl1 - fl0)) bytes: the overlay, not slim"
	[ $((ve1 - ve0)) -lt $((BYTES / 100)) ] ||
		fail "$case: the veths carried $((ve1 - ve0)) bytes: the pod network, not slim"
}

transfer cross 2 srv2 "$srv2" 5001
transfer samehost 1 srv1 "$srv1" 5002

# ---------------------------------------------------------------- removal

names=$(ctl 1 --json pod list | jq -r '[.pods[].name] | sort | join(" ")')
assert_eq "$names" "cli_cross cli_samehost srv1" "h1's registered pods"
# The clients still run: podman rm -f stops them and detaches them. Each server then reads EOF
# (the close crossed slim too), exits and is detached by podman's cleanup; rm removes it. (Not
# one rm -f for all: podman 4.3 fails "container state improper" on a container that exits
# while rm -f stops it.)
t2=$(date +%s%N)
pm 1 rm -f -t 0 cli_cross cli_samehost >/dev/null
exited() { [ "$(pm "$1" inspect -f '{{.State.Status}}' "$2")" = exited ]; }
for s in 2:srv2 1:srv1; do
	wait_for 30 exited "${s%:*}" "${s#*:}"
	logs_have "${s%:*}" "${s#*:}" "server: client gone" || fail "${s#*:} did not see EOF"
	pm "${s%:*}" rm "${s#*:}" >/dev/null
done
log "4 containers removed in $((($(date +%s%N) - t2) / 1000000)) ms"

# A container whose process ends: podman's cleanup (from conmon) detaches it, before any rm.
# (The 4 removed above are gone by now, so whatever is attached on h1 is this one.)
run 1 short app:short python3 -c 'print("short done")'
attached() { [ -n "$(ctl 1 --json pod list | jq -r '.pods[].name')$(in_ns h1 ip -j link show |
	jq -r '.[].ifname | select(startswith("slim"))')" ]; }
wait_for 20 logs_have 1 short "short done"
t3=$(date +%s%N)
deadline=$(($(date +%s) + 20))
while attached; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "the exited container is still attached"
	sleep 0.05
done
log "the exited container was detached by podman's cleanup" \
	"$((($(date +%s%N) - t3) / 1000000)) ms after its output"
pm 1 rm short >/dev/null

for i in 1 2; do
	left=$(in_ns "h$i" ip -j link show | jq -r '[.[].ifname | select(startswith("slim"))] | join(" ")')
	[ -z "$left" ] || fail "h$i: veths left after podman rm: $left"
	left=$(find "$TMP/h$i/ipam/$NET" -name '10.*' -printf '%f ')
	[ -z "$left" ] || fail "h$i: host-local still reserves $left"
	left=$(ctl "$i" --json pod list | jq -r '[.pods[].name] | join(" ")')
	[ -z "$left" ] || fail "h$i: router still has pods $left"
	[ -z "$(pm "$i" ps -aq)" ] || fail "h$i: podman still has containers"
done
[ ! -e "$sandbox" ] || fail "srv2's network namespace $sandbox is left"

log "ok: no veth, reservation, router pod or container left;" \
	"total $((($(date +%s%N) - t0) / 1000000)) ms"

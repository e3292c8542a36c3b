#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A listen() made while the router cannot answer is asked again later, not lost: with h2's
# router stopped (SIGSTOP), an epoll server and a blocking-accept server in h2/p1 listen (the
# shim gives up on the router after its 2 s bound and the servers run on the overlay); once the
# router runs again both get host listeners without any call of theirs beyond the waiting they
# already do, and a shimmed client from h1 reaches each over slim (identified accepts on h2) with
# the exact bytes echoed back. The same after a kill -9: a server that listens while the router
# is dead gets its host listener from the restarted router.
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd jq python3
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
lab_up >/dev/null
S2=/run/slim/$PREFIX/h2/router.sock
ctl() { "$BIN/slimctl" -s "$@"; }
accepts() { ctl "$S2" --json status | jq .governance.kernel.accept_ok; }
has_listener() { ctl "$S2" listeners | grep -q ":$1 "; }
srv=$(addr h2/p1)
ms() { echo $(( $(date +%s%N) / 1000000 )); }

# echo.py epoll|block PORT: an echo server (a non-blocking listener in an epoll set, or a
# blocking accept) that prints "listening" once listen() returned, then echoes each connection
# until its EOF. echo.py client SERVER PORT N: N random bytes, half-close, the echo must match.
cat >"$TMP/echo.py" <<'EOF'
import os, selectors, socket, sys
def to_eof(s):
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            return data
        data += b
def serve(c, peer):
    c.setblocking(True)
    data = to_eof(c)
    c.sendall(data)
    c.close()
    print("served %d bytes to %s" % (len(data), peer[0]), flush=True)
mode = sys.argv[1]
if mode == "client":
    data = os.urandom(int(sys.argv[4]))
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = to_eof(s)
    print("ok" if got == data else "bad: sent %d, got %d bytes back" % (len(data), len(got)))
    sys.exit(0)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[2])))
ls.listen(16)
print("listening", flush=True)
if mode == "epoll":
    ls.setblocking(False)
    sel = selectors.EpollSelector()
    sel.register(ls, selectors.EVENT_READ)
    while True:
        for _ in sel.select():
            try:
                c, peer = ls.accept()
            except BlockingIOError:
                continue  # a wake-up with nothing to accept: allowed, as for any listener
            serve(c, peer)
while True:
    serve(*ls.accept())
EOF

# over_slim PORT: 1 MiB from h1/p1 comes back exact, through an identified accept on h2.
over_slim() {
	local a0 out
	a0=$(accepts)
	out=$(in_slim h1/p1 python3 "$TMP/echo.py" client "$srv" "$1" 1048576) || fail "client to :$1: $out"
	[ "$out" = ok ] || fail "client to :$1: $out"
	assert_ge "$(( $(accepts) - a0 ))" 1 "identified accepts on h2 for :$1"
	log "  :$1: 1 MiB echoed exactly, over slim"
}

log "h2's router stopped; two servers listen in h2/p1 meanwhile"
pid2=$(cat "/run/slim/$PREFIX/h2/router.pid")
kill -STOP "$pid2"
cleanup "kill -CONT $pid2"
bg epoll h2/p1 --slim env SLIM_DEBUG=1 python3 "$TMP/echo.py" epoll 8100
bg block h2/p1 --slim env SLIM_DEBUG=1 python3 "$TMP/echo.py" block 8200
wait_for 10 grep -q '^listening' "$TMP/epoll.log"
wait_for 10 grep -q '^listening' "$TMP/block.log"
grep -q "asking again later" "$TMP/epoll.log" || fail "epoll server: $(cat "$TMP/epoll.log")"
grep -q "asking again later" "$TMP/block.log" || fail "blocking server: $(cat "$TMP/block.log")"

log "h2's router runs again: both get their host listeners"
t0=$(ms)
kill -CONT "$pid2"
wait_for 10 has_listener 8100
t1=$(ms)
wait_for 10 has_listener 8200
t2=$(ms)
log "  host listeners $((t1 - t0)) ms (epoll) and $((t2 - t0)) ms (blocking accept) after SIGCONT"
over_slim 8100
over_slim 8200
grep -q "^served 1048576 bytes to 10.244.1.2" "$TMP/epoll.log" || fail "epoll server saw: $(cat "$TMP/epoll.log")"
grep -q "^served 1048576 bytes to 10.244.1.2" "$TMP/block.log" || fail "blocking server saw: $(cat "$TMP/block.log")"

log "h2's router killed; a server listens while it is dead; the restarted router gives it a host listener"
kill -KILL "$pid2"
wait_for 5 sh -c "! '$BIN/slimctl' -s '$S2' status"
# The shim by hand: slimlab exec --slim wants a running router.
bg dead h2/p1 env LD_PRELOAD="$TOP/build/lib/libslim.so" SLIM_ROUTER_SOCKET="$S2" SLIM_DEBUG=1 \
	python3 "$TMP/echo.py" epoll 8300
wait_for 10 grep -q '^listening' "$TMP/dead.log"
grep -q "asking again later" "$TMP/dead.log" || fail "server during the outage: $(cat "$TMP/dead.log")"
t0=$(ms)
"$SLIMLAB" router restart --prefix "$PREFIX" h2 >/dev/null
for _ in $(seq 200); do has_listener 8300 && break; sleep 0.05; done
has_listener 8300 || fail "no host listener for :8300 from the restarted router: $(cat "$TMP/dead.log")"
log "  host listener $(( $(ms) - t0 )) ms after the restart began"
over_slim 8300
over_slim 8100
log "ok"

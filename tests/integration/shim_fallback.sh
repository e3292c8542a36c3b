#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The shim without a working router: with SLIM_ROUTER_SOCKET naming a path where nothing listens
# the semantics suite (tests/progs/semantics.c) still passes like the control (fallback over the
# overlay), promptly, and the shim adds nothing to stdout and, without SLIM_DEBUG, nothing to
# stderr (SLIM_DEBUG=1 gives a log line); a client whose router is killed, then whose server's
# router is killed, between cases keeps its connections and makes new ones; a stopped (hung)
# router (SIGSTOP) does not hang the app.
# timeout: 180
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/semantics.sh"

[ -x "$SEM" ] || skip "build/tests/progs/semantics is not built"
[ -e "$TOP/build/lib/libslim.so" ] && [ -x "$BIN/slimrouterd" ] || skip "shim or router not built"
lab_up
srv=$(addr h2/p1)
run=/run/slim/$PREFIX
absent=$run/h1/absent.sock
problems=()

dead() { ! kill -0 "$1" 2>/dev/null; }
ms() { echo $(($(date +%s%N) / 1000000)); }

bg srv_slim h2/p1 --slim "$SEM" server 8000
bg srv_plain h2/p1 "$SEM" server 10000
for s in srv_slim srv_plain; do wait_for 10 started $s; done
[ ! -e "$absent" ] || fail "$absent exists"

log "router absent (SLIM_ROUTER_SOCKET=$absent): the whole suite against the control"
suite control h1/p1 "$srv" 10000 all
SUITE_ENV=(SLIM_ROUTER_SOCKET="$absent")
suite absent h1/p1 --slim "$srv" 8000 all
check control absent "router absent"

log "router absent: stdout is exactly the program's, stderr empty; SLIM_DEBUG=1 logs"
# (cases whose ok line carries no "# note", so the expected output is exact)
list=connect_block,whoami,srv_block,srv_epoll,epoll_before_connect,dup,fork,exec,udp,shutdown_wr
expected=$(tr , '\n' <<<"$list" | sed 's/^/ok /')
t0=$(ms)
suite quiet h1/p1 --slim "$srv" 8000 "$list"
took=$(($(ms) - t0))
[ "$(cat "$TMP/quiet.out")" = "$expected" ] || problems+=("router absent: stdout differs from the program's own")
[ ! -s "$TMP/quiet.err" ] || problems+=("router absent, SLIM_DEBUG unset: stderr not empty: $(head -c 300 "$TMP/quiet.err")")
log "router absent: $list took $took ms"
[ "$took" -lt 15000 ] || problems+=("router absent: $list took $took ms")
SUITE_ENV=(SLIM_ROUTER_SOCKET="$absent" SLIM_DEBUG=1)
suite debug h1/p1 --slim "$srv" 8000 connect_block
[ "$(cat "$TMP/debug.out")" = "ok connect_block" ] || problems+=("SLIM_DEBUG=1: stdout differs from the program's own")
[ -s "$TMP/debug.err" ] || problems+=("router absent, SLIM_DEBUG=1: no log line on stderr")
SUITE_ENV=()

log "h1's router stopped (SIGSTOP, a hung router): the app must not hang"
pid1=$(cat "$run/h1/router.pid")
cleanup "kill -CONT $pid1"
kill -STOP "$pid1"
t0=$(ms)
suite stopped h1/p1 --slim "$srv" 8000 connect_block,connect_nonblock,srv_block
took=$(($(ms) - t0))
kill -CONT "$pid1"
log "router stopped: 3 cases took $took ms"
[ "$(grep -c '^ok ' "$TMP/stopped.out")" = 3 ] || problems+=("router stopped: $(grep -v '^ok ' "$TMP/stopped.out" | head -n1)")
[ "$took" -lt 10000 ] || problems+=("router stopped: 3 cases took $took ms")

log "routers killed between cases: h1's first, then h2's"
cases=hold,connect_block,wait,connect_block,connect_nonblock,whoami,srv_block,epoll_before_connect
cases=$cases,threads,wait,connect_block,connect_nonblock,whoami,srv_block,srv_epoll,threads
n_cases=$(tr , '\n' <<<"$cases" | wc -l)
bg killed h1/p1 --slim "$SEM" client --wait-file "$TMP/go" "$srv" 8000 "$cases"
wait_for 20 grep -q '^ok connect_block' "$TMP/killed.log"
pid1=$(cat "$run/h1/router.pid")
kill "$pid1"
wait_for 10 dead "$pid1"
touch "$TMP/go.1"
wait_for 60 grep -q '^ok threads' "$TMP/killed.log"
pid2=$(cat "$run/h2/router.pid")
kill "$pid2"
wait_for 10 dead "$pid2"
touch "$TMP/go.2"
wait_for 60 dead "$PID_killed"
rc=0
wait "$PID_killed" || rc=$?
sed 's/^/  killed: /' "$TMP/killed.log"
[ "$rc" = 0 ] || problems+=("routers killed: the client exited with status $rc")
[ "$(grep -c '^ok ' "$TMP/killed.log")" = "$n_cases" ] ||
	problems+=("routers killed: $(grep -c '^ok ' "$TMP/killed.log") of $n_cases cases ok")
! grep -v '^ok ' "$TMP/killed.log" | grep -q . || problems+=("routers killed: unexpected output")

if [ ${#problems[@]} -gt 0 ]; then
	for p in "${problems[@]}"; do log "problem: $p"; done
	fail "${#problems[@]} problem(s): ${problems[*]}"
fi
log "all checks passed"

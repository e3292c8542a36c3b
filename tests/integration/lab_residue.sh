#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# lab_residue: slimlab leaves nothing behind (namespaces, root links, mounts, run files,
# processes) after down, after a scenario that fails halfway and after an up that fails halfway;
# it refuses a second up of a live prefix without harming it, and rejects bad arguments with a
# one-line error.
# timeout: 120
. "$(dirname "$0")/../lib.sh"
need_root
need_cmd ip ping setpriv

P2=${PREFIX}b # the scenario that fails halfway
P3=${PREFIX}c # the up that fails halfway
MARK=987.$$   # a sleep argument that makes this scenario's own processes easy to find

# snapshot FILE: everything of the machine a lab could leave behind, restricted to what other
# people's labs may change meanwhile (their namespaces and run directories are not ours).
snapshot() {
	local ours="^/run/netns/($PREFIX|$P2|$P3)-" ours_run="^/run/slim/($PREFIX|$P2|$P3)/"
	{
		echo "## namespaces"
		ip netns list | awk '{ print $1 }' | grep -E "^($PREFIX|$P2|$P3)-" || true
		echo "## links of the root namespace"
		ip -o link show | awk -F': ' '{ print $2 }'
		echo "## mounts"
		# /run/netns itself is a mount iproute2 makes once and keeps; other people's
		# namespaces and labs (their bpffs under /run/slim/PREFIX) come and go.
		awk -v ours="$ours" -v ours_run="$ours_run" '$2 != "/run/netns" &&
			($2 !~ "^/run/netns/" || $2 ~ ours) && ($2 !~ "^/run/slim/" || $2 ~ ours_run)' \
			/proc/self/mounts
		echo "## run directories"
		find "/run/slim/$PREFIX" "/run/slim/$P2" "/run/slim/$P3" 2>/dev/null || true
		echo "## processes"
		pgrep -af "/run/slim/($PREFIX|$P2|$P3)/|$MARK" || true
	} >"$1"
}

# same_as_before FILE WHEN: the machine looks as it did in $TMP/before.
same_as_before() {
	snapshot "$1"
	diff -u "$TMP/before" "$1" >&2 || fail "$2: the machine differs from before (diff above)"
}

# expect_error RC WORDS CMD...: CMD fails with exit status RC and one stderr line
# "slimlab: ..." containing WORDS.
expect_error() {
	local want=$1 words=$2 rc=0 err
	shift 2
	err=$("$@" 2>&1 >/dev/null) || rc=$?
	[ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want (stderr: $err)"
	[ "$(printf '%s\n' "$err" | wc -l)" = 1 ] || fail "'$*': expected one error line, got: $err"
	[[ $err == "slimlab: "*"$words"* ]] || fail "'$*': error '$err' does not say '$words'"
}

# gone PID: the process has exited (a zombie waiting for its parent counts as exited).
gone() { [ ! -e "/proc/$1" ] || [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

snapshot "$TMP/before"
grep -q "^$PREFIX-" "$TMP/before" && fail "prefix $PREFIX already in use"

log "argument errors"
expect_error 2 "unknown command" "$SLIMLAB" frobnicate
expect_error 2 "unknown argument" "$SLIMLAB" up --prefix "$PREFIX" --bogus
expect_error 2 "needs a value" "$SLIMLAB" up --hosts
expect_error 1 "bad prefix" "$SLIMLAB" up --prefix Bad-1
expect_error 1 "bad prefix" "$SLIMLAB" up --prefix abcdefghi
expect_error 1 "bad number of hosts" "$SLIMLAB" up --prefix "$PREFIX" --hosts 0
expect_error 1 "bad number of hosts" "$SLIMLAB" up --prefix "$PREFIX" --hosts 255
expect_error 1 "bad number of hosts" "$SLIMLAB" up --prefix "$PREFIX" --hosts x
expect_error 1 "bad number of hosts" "$SLIMLAB" up --prefix "$PREFIX" --hosts 02
expect_error 1 "bad number of pods" "$SLIMLAB" up --prefix "$PREFIX" --pods 251
expect_error 1 "must run as root" setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$SLIMLAB" up --prefix "$PREFIX" --no-slim
# A PATH with everything of /usr/bin but ip.
mkdir "$TMP/noip"
ln -s /usr/bin/* "$TMP/noip/"
rm -f "$TMP/noip/ip"
expect_error 1 "ip not found" env PATH="$TMP/noip" "$SLIMLAB" up --prefix "$PREFIX" --no-slim
expect_error 1 "no lab with prefix" "$SLIMLAB" exec --prefix "$PREFIX" h1 -- true
expect_error 1 "no lab with prefix" "$SLIMLAB" addr --prefix "$PREFIX" h1
rc=0
"$SLIMLAB" status --prefix "$PREFIX" >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "status of a lab that is not up exited $rc, expected 1"
same_as_before "$TMP/after-errors" "after the argument errors"

log "up, with a process in a pod and one in a host"
lab_up
"$SLIMLAB" status --prefix "$PREFIX" >"$TMP/status" || fail "status of a live lab failed"
grep -q 'h2/p2 *10.244.2.3/24' "$TMP/status" ||
	fail "status does not show h2/p2: $(cat "$TMP/status")"
bg podsleeper h1/p1 sleep "$MARK"
bg hostsleeper h2 sleep "$MARK"
wait_for 5 pgrep -f "sleep $MARK"
[ "$(ip netns list | grep -cE "^$PREFIX-")" = 7 ] || fail "expected 7 namespaces"
ip -o link show | awk -F': ' '{ print $2 }' >"$TMP/links-up"
sed -n '/^## links/,/^## mounts/p' "$TMP/before" | sed '1d;$d' | diff -u - "$TMP/links-up" >&2 ||
	fail "the live lab changed the links of the root namespace"
routers_before=$(cat /run/slim/"$PREFIX"/h*/router.pid 2>/dev/null || true)

log "exec passes status and stdin through; addr and target errors"
rc=0
in_ns h1 sh -c 'exit 7' || rc=$?
assert_eq "$rc" 7 "exit status through exec"
assert_eq "$(echo through | in_ns h2/p1 cat)" through "stdin through exec"
in_ns h2/p2 ip -4 -o addr show dev eth0 | grep -q ' 10.244.2.3/24 ' ||
	fail "exec h2/p2 does not run in the namespace of h2/p2"
assert_eq "$(addr h2)" 198.18.0.2 "addr h2"
assert_eq "$(addr h1/p2)" 10.244.1.3 "addr h1/p2"
for t in h0 h1/p h1/p0 x h01 h1/p1/x 'h1 /p1' fabric; do
	expect_error 1 "malformed target" "$SLIMLAB" addr --prefix "$PREFIX" "$t"
done
expect_error 1 "no h3" "$SLIMLAB" addr --prefix "$PREFIX" h3
expect_error 1 "no h1/p3" "$SLIMLAB" exec --prefix "$PREFIX" h1/p3 -- true
expect_error 2 "missing command" "$SLIMLAB" exec --prefix "$PREFIX" h1
expect_error 1 "pods only" "$SLIMLAB" exec --prefix "$PREFIX" --slim h1 -- true

log "a second up of the live prefix fails and leaves it intact"
expect_error 1 "already up" "$SLIMLAB" up --prefix "$PREFIX" --no-slim
expect_error 1 "already up" "$SLIMLAB" up --prefix "$PREFIX" --hosts 3
"$SLIMLAB" status --prefix "$PREFIX" >/dev/null || fail "the lab is damaged after a second up"
in_ns h1/p1 ping -c 1 -W 2 -q "$(addr h2/p2)" >/dev/null ||
	fail "h1/p1 cannot reach h2/p2 after a second up"
pgrep -f "sleep $MARK" >/dev/null || fail "a second up killed the lab's processes"
assert_eq "$(cat /run/slim/"$PREFIX"/h*/router.pid 2>/dev/null || true)" "$routers_before" \
	"routers after a second up"

log "down twice"
"$SLIMLAB" down --prefix "$PREFIX" || fail "down failed"
"$SLIMLAB" down --prefix "$PREFIX" || fail "a second down failed"
# shellcheck disable=SC2154 # PID_<name> are set by bg
{ gone "$PID_podsleeper" && gone "$PID_hostsleeper"; } ||
	fail "down left the lab's processes running"
same_as_before "$TMP/after-down" "after down"

log "a scenario that fails halfway cleans up through lib.sh"
cat >"$TMP/halfway.sh" <<EOF
. "$TOP/tests/lib.sh"
lab_up --no-slim
bg sleeper h2/p2 sleep $MARK
wait_for 5 pgrep -f "sleep $MARK"
fail "deliberate failure halfway"
EOF
rc=0
PREFIX=$P2 bash "$TMP/halfway.sh" >"$TMP/halfway.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "the halfway scenario exited $rc, expected 1: $(cat "$TMP/halfway.log")"
grep -q "deliberate failure halfway" "$TMP/halfway.log" || fail "halfway: $(cat "$TMP/halfway.log")"
same_as_before "$TMP/after-halfway" "after an up that failed halfway"

log "an up that fails halfway takes down what it built"
# A copy of slimlab next to a stand-in router and slimctl: the router stays up (or exits at once
# with FAKE_ROUTER=exit), slimctl refuses to register h2/p2.
mkdir -p "$TMP/fake/bin"
cp "$SLIMLAB" "$TMP/fake/bin/slimlab"
cat >"$TMP/fake/bin/slimrouterd" <<'EOF'
#!/usr/bin/env bash
# slimrouterd --socket SOCK --cluster FILE --node NAME ... --pidfile FILE ...
if [ "${FAKE_ROUTER:-}" = exit ]; then
	echo "fake router: cannot bind the control socket" >&2
	exit 3
fi
: >"$2"
while [ $# -gt 0 ]; do
	[ "$1" = --pidfile ] && echo $$ >"$2"
	shift
done
exec -a "fake-slimrouterd" sleep 600
EOF
cat >"$TMP/fake/bin/slimctl" <<'EOF'
#!/usr/bin/env bash
# slimctl -s SOCK status | slimctl -s SOCK pod add --netns NS --ip IP ...
case $3 in
status) [ -e "$2" ] ;;
pod)
	if [ "$7" = --ip ] && [ "$8" = 10.244.2.3 ]; then
		echo "slimctl: refused (fake)" >&2
		exit 1
	fi
	;;
esac
EOF
chmod +x "$TMP/fake/bin/"*
cleanup "$TMP/fake/bin/slimlab down --prefix $P3"
expect_error 1 "registering pod h2/p2 failed: slimctl: refused (fake)" \
	"$TMP/fake/bin/slimlab" up --prefix "$P3"
same_as_before "$TMP/after-failed-registration" "after a failed pod registration"
FAKE_ROUTER="exit" expect_error 1 "router of h1 exited during start-up: fake router: cannot bind" \
	"$TMP/fake/bin/slimlab" up --prefix "$P3"
same_as_before "$TMP/after-failed-router" "after a router that failed to start"
# And the stand-ins do work when nothing fails: the routers run and down stops them.
FAKE_ROUTER=stay "$TMP/fake/bin/slimlab" up --prefix "$P3" --pods 1 >/dev/null ||
	fail "up with stand-in router and slimctl failed"
"$TMP/fake/bin/slimlab" status --prefix "$P3" >"$TMP/status-fake" ||
	fail "status with stand-ins failed"
grep -q '^  h2 .*router running' "$TMP/status-fake" ||
	fail "status does not show the stand-in router running: $(cat "$TMP/status-fake")"
"$TMP/fake/bin/slimlab" down --prefix "$P3"
same_as_before "$TMP/after-fake-routers" "after fake routers"
log "ok"

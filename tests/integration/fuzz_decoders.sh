#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every libFuzzer target (tests/fuzz/fuzz_*.c: the decoders of bytes that come from a pod or
# the fabric, and the router's decoders of its cluster file, slimctl commands and pod
# announcements) for a bounded time from its seed corpus, and fails on any crash, sanitizer
# report, leak, timeout, out-of-memory or violated invariant. FUZZ_TIME=N sets the seconds per
# target (default: 28 s split over the targets, at most 10 each, so that with a first build of
# the targets, about 25 s, make check spends about a minute here).
# timeout: 180
. "$(dirname "$0")/../lib.sh"

need_cmd clang make

# The fuzzer runtime comes from libclang-rt-14-dev; without it nothing here can link.
cat >"$TMP/probe.c" <<'PROBE'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
PROBE
clang -fsanitize=fuzzer,address,undefined -o "$TMP/probe" "$TMP/probe.c" >"$TMP/probe.log" 2>&1 ||
	skip "clang cannot link -fsanitize=fuzzer (libclang-rt-14-dev missing?):" \
		"$(tail -n1 "$TMP/probe.log")"

make -s -C "$TOP/tests" fuzz >"$TMP/build.log" 2>&1 ||
	{ cat "$TMP/build.log"; fail "building the fuzz targets"; }

# The targets run in a network namespace of their own (fuzz_control has a router inside, and
# whatever it starts must stay in there); fuzz_control's "@pod" is a second, fresh one.
run=()
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
	cleanup "ip netns del $PREFIX-fuzz"
	cleanup "ip netns del $PREFIX-fuzzpod"
	ip netns add "$PREFIX-fuzz" && run=(ip netns exec "$PREFIX-fuzz")
	ip netns add "$PREFIX-fuzzpod" && export FUZZ_NETNS=/run/netns/$PREFIX-fuzzpod
fi

targets=()
for src in "$TOP"/tests/fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
[ ${#targets[@]} -gt 0 ] || fail "no fuzz targets in tests/fuzz/"
per=${FUZZ_TIME:-$(( 28 / ${#targets[@]} ))}
[ -n "${FUZZ_TIME:-}" ] || { [ "$per" -le 10 ] || per=10; [ "$per" -ge 2 ] || per=2; }

# Any of these in a run's output is a finding, whatever the exit status says.
findings='^(==[0-9]+==ERROR|SUMMARY: )|runtime error:|invariant violated'

# report TARGET: what a failed run found, and its crash inputs in hex.
report() {
	local a

	grep -E "$findings|Test unit written" "$TMP/$1.log" | head -n 20 >&2
	for a in "$TMP/art-$1"/*; do
		[ -e "$a" ] || continue
		echo "crash input $(basename "$a"):" >&2
		od -A d -t x1 "$a" | head -n 8 >&2
	done
}

bad=()
for t in "${targets[@]}"; do
	bin=$TOP/build/tests/fuzz/$t
	seeds=$TOP/tests/fuzz/corpus/$t
	[ -x "$bin" ] || fail "$bin was not built"
	[ -d "$seeds" ] || fail "no seed corpus $seeds"
	# New inputs go to the first corpus directory: a scratch one, so the seeds stay as they are.
	mkdir -p "$TMP/work-$t" "$TMP/art-$t"
	opts=(-max_total_time="$per" -timeout=5 -rss_limit_mb=2048 -detect_leaks=1
		-print_final_stats=1 -artifact_prefix="$TMP/art-$t/")
	[ ! -f "$TOP/tests/fuzz/$t.dict" ] || opts+=(-dict="$TOP/tests/fuzz/$t.dict")
	rc=0
	"${run[@]}" "$bin" "${opts[@]}" "$TMP/work-$t" "$seeds" >"$TMP/$t.log" 2>&1 || rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/$t.log")
	cov=$(grep -o 'cov: [0-9]*' "$TMP/$t.log" | tail -n1 | awk '{print $2}')
	log "$t: ${per}s, ${runs:-?} runs, coverage ${cov:-?} edges, exit $rc"
	if [ "$rc" != 0 ] || grep -qE "$findings" "$TMP/$t.log" || [ -n "$(ls -A "$TMP/art-$t")" ]
	then
		report "$t"
		bad+=("$t")
	elif [ "${runs:-0}" -eq 0 ]; then
		# A target that did not even run its seeds did not test anything.
		log "$t: executed no inputs"
		bad+=("$t")
	fi
done

[ ${#bad[@]} -eq 0 ] || fail "fuzz targets failed: ${bad[*]}"
log "all ${#targets[@]} fuzz targets clean"

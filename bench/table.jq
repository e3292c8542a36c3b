# SPDX-License-Identifier: MIT
# Renders latest.json as the Markdown table a person reads (bench/run writes it to latest.md).
def num: if . == null then "—"
	elif . >= 1000 then (. | round | tostring)
	elif . >= 100 then ((. * 10 | round) / 10 | tostring)
	elif . >= 10 then ((. * 100 | round) / 100 | tostring)
	else ((. * 1000 | round) / 1000 | tostring) end;
# Every run of every cell, flattened, with its workload and mode.
def allruns: [.results | to_entries[] | .key as $f | .value | to_entries[] | .key as $m
	| .value.runs[] | . + {figure: $f, mode: $m}];
def fallbacks: [allruns[] | select(.path == "overlay-fallback" or .path == "tcp-fallback")];
# One table cell: the median, or why there is none, and what was dropped.
def cell: if . == null then "—"
	elif .median == null then
		(if (.paths | index("overlay-fallback"))
		 then "**FALLBACK** (\(.excluded)/\(.runs | length) over the overlay)"
		 elif (.paths | index("tcp-fallback"))
		 then "**FALLBACK** (\(.excluded)/\(.runs | length) not redirected)"
		 elif .paths == ["none"] then "**failed**"
		 else "**no valid sample** (\(.paths | join(", ")))" end)
	else (.median | num)
		+ (if .excluded == 0 then ""
		   elif (.paths | index("overlay-fallback")) or (.paths | index("tcp-fallback"))
		   then " **(\(.excluded) FALLBACK dropped)**"
		   else " (\(.excluded) bad dropped)" end)
		+ (if any(.runs[]; .errors != null and .requests > 0 and .errors > 0.01 * .requests)
		   then " ⚠ errors" else "" end)
	end;
.meta as $meta | $meta.modes as $modes | .results as $res | .ratios as $rat | allruns as $allruns
| ($meta.ratio_pairs // [range(0; $modes | length) as $i | range($i + 1; $modes | length) as $j
   | "\($modes[$j])/\($modes[$i])"]) as $pairs
| (fallbacks | length) as $nfb
| "## slim bench — \($meta.date), commit \($meta.commit)",
  "",
  "Kernel \($meta.kernel), \($meta.host.cpus) CPUs (\($meta.host.cpu_model)), \($meta.rounds) round(s)\(if $meta.quick then " (quick)" else "" end), took \($meta.duration_s) s, load average \($meta.host.loadavg_start) → \($meta.host.loadavg_end). Each cell is the median of its samples; the ratios are ratios of medians.",
  (if $nfb > 0 then "", "**WARNING: \($nfb) slim sample(s) went over the overlay (overlay-fallback) or were not redirected (tcp-fallback). They are not numbers of their mode and are left out of every median.**" else empty end),
  "",
  "| workload | unit | better | \($modes | join(" | ")) |\($pairs | map(" " + . + " |") | join(""))",
  "|---|---|---|\($modes | map("---:") | join("|"))|\($pairs | map("---:|") | join(""))",
  ($meta.figures | keys_unsorted[] as $f | select($res[$f] != null)
   | "| \($f) | \($meta.figures[$f].unit) | \($meta.figures[$f].better) | "
     + ([$modes[] as $m | $res[$f][$m] | cell] | join(" | ")) + " |"
     + ([$pairs[] as $p | " \($rat[$f][$p] // "—") |"] | join(""))),
  "",
  "better: `higher` or `lower` is better for that workload. A ratio is *a/b* of the medians: for a `higher` row a ratio above 1 means *a* did better, for a `lower` row a ratio below 1 does.",
  "",
  ([$modes[] as $m | [allruns[] | select(.mode == $m and .value != null)] as $r
    | select($r | length > 0)
    | "\($m) " + ([$r[] | .path] | group_by(.) | map("\(.[0]) \(length)/\($r | length)") | join(", "))]
   | if length > 0 then "Path check per sample (overlay share of the bytes the app moved, from the flannel.1 / pod eth0 counters; for redirect and tcp also the router's count of redirected sends): " + join("; ") + "." else "No sample measured anything." end),
  (if ($meta.skipped_modes | length) > 0
   then "", "Skipped: " + ([$meta.skipped_modes[] | "\(.mode) (\(.reason))"] | join("; ")) + "."
   else empty end),
  ([allruns[] | select(.path | test("^unexpected")) | "\(.figure)/\(.mode) round \(.round): \(.path)"]
   | if length > 0 then "", "**WARNING: samples whose path did not match their mode (left out):** " + join("; ") else empty end),
  ([allruns[] | select(.error != null) | "\(.figure)/\(.mode) round \(.round): \(.error)"]
   | if length > 0 then "", "Failed samples:", (.[] | "- " + .) else empty end),
  # Errors per workload that counts them (the four setup_latency figures share one count).
  ([["conn_per_s", "conn_per_s", "non-2xx responses + socket errors / requests"],
    ["redis_setup_c1_rps", "redis_setup_c1_rps", "error lines of redis-benchmark / connections"],
    ["redis_setup_c16_rps", "redis_setup_c16_rps", "error lines of redis-benchmark / connections"],
    ["setup_connect_p50_us", "setup_latency", "failed connections / connections"]][]
   | .[0] as $f | .[1] as $name | .[2] as $what
   | [$modes[] as $m | [$allruns[] | select(.figure == $f and .mode == $m and .errors != null)]
      | select(length > 0) | "\($m) \(map(.errors) | add)/\(map(.requests) | add)"]
   | if length > 0 then "", "\($name) errors (\($what), all rounds): " + join(", ") + "." else empty end)

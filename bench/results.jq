# SPDX-License-Identifier: MIT
# Folds the samples of one run (JSON lines, one per sample) into latest.json: medians of the valid
# samples per workload and mode, every run with its path, and the ratios of the medians.
# Called as: jq -s --argjson meta M --argjson figs F -f results.jq samples.jsonl
def median: sort | if length == 0 then null
	elif length % 2 == 1 then .[length / 2 | floor]
	else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def r4: if . == null then null else (. * 10000 | round) / 10000 end;
# A sample counts when it measured something over the path its mode stands for.
def valid: .value != null
	and (.path == "direct" or .path == "overlay" or .path == "redirect" or .path == "tcp"
	     or .path == "unchecked");
. as $all
| ($meta.modes) as $modes
| {meta: ($meta + {figures: $figs}),
   results: ([$figs | keys_unsorted[] as $f
	| {($f): ([$modes[] as $m
		| ($all | map(select(.figure == $f and .mode == $m))) as $s
		| select(($s | length) > 0)
		| ([$s[] | select(valid) | .value]) as $v
		| {($m): {median: ($v | median | r4), samples: $v, unit: $figs[$f].unit,
			  excluded: ([$s[] | select(valid | not)] | length),
			  paths: ([$s[] | .path] | unique),
			  runs: ($s | map(del(.figure, .mode)))}}] | add // {})}] | add // {})}
# The pairs "b/a" named in meta.ratio_pairs whose modes both ran; every pair when none is named.
| (if $meta.ratio_pairs == null
   then [range(0; $modes | length) as $i | range($i + 1; $modes | length) as $j
	 | [$modes[$i], $modes[$j]]]
   else [$meta.ratio_pairs[] | split("/") | [.[1], .[0]]
	 | select(.[0] as $a | .[1] as $b | ($modes | index($a)) != null and ($modes | index($b)) != null)]
   end) as $pairs
| .meta.ratio_pairs = [$pairs[] | "\(.[1])/\(.[0])"]
| .ratios = ([.results | to_entries[] | .key as $f | .value as $r
	| {($f): ([$pairs[] | .[0] as $a | .[1] as $b
		| select($r[$a].median != null and $r[$b].median != null and $r[$a].median != 0)
		| {("\($b)/\($a)"): ($r[$b].median / $r[$a].median | (. * 1000 | round) / 1000)}]
		| add // {})}] | add // {})

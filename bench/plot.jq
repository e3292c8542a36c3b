# SPDX-License-Identifier: MIT
# Turns latest.json into the tab-separated data plot.gp draws: per workload, every mode's median
# divided by the first mode's ("?" when missing), then the absolute medians as bar labels.
.meta as $meta | $meta.modes as $modes | .results as $res
| (["figure", "unit", "better"] + $modes + ($modes | map(. + "_abs")) | @tsv),
  ($meta.figures | keys_unsorted[] as $f | select($res[$f] != null)
   | ($res[$f][$modes[0]].median) as $base
   | [$f, $meta.figures[$f].unit, $meta.figures[$f].better]
     + [$modes[] as $m | $res[$f][$m].median
	| if . == null or $base == null or $base == 0 then "?" else (. / $base | tostring) end]
     + [$modes[] as $m | $res[$f][$m]
	| if . == null then "n/a" elif .median == null then "fallback"
	  else (.median | if . >= 100 then (round | tostring)
		elif . >= 10 then ((. * 10 | round) / 10 | tostring)
		else ((. * 100 | round) / 100 | tostring) end) end]
   | @tsv)

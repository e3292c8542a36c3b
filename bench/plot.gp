# SPDX-License-Identifier: MIT
# Draws the bench chart: one group of bars per workload, every mode normalized to the first one.
# Called by bench/run as: gnuplot -c plot.gp DATA.tsv OUT.png TITLE NMODES [NFIGURES]
# DATA.tsv (with a header line) columns: figure, unit, better, NMODES normalized medians ("?" = none), NMODES absolute labels.
datafile = ARG1
outfile = ARG2
n = int(ARG4)
# Each group needs room for its longest label (a figure name of ~25 characters), so the chart
# grows with the number of workloads instead of letting their names run into each other.
nfig = ARGC >= 5 ? int(ARG5) : 6
width = nfig * 200 > 1500 ? nfig * 200 : 1500

set terminal pngcairo size width,760 font "sans,11" noenhanced
set output outfile
set datafile separator "\t"
set datafile missing "?"
set datafile columnheaders
set title ARG3 font "sans,13"
set key top left horizontal
set style fill solid 0.85 border rgb "#333333"
set grid ytics lc rgb "#dddddd"
set xtics scale 0 font "sans,10"
set ytics nomirror
set yrange [0:*]
set offsets 0.15, 0.15, graph 0.12, 0
set ylabel "median relative to the first mode (= 1.0); absolute medians on the bars"
set bmargin 6

bw = 0.8 / n
off(j) = (j - (n - 1) / 2.0) * bw
colors = "#4c72b0 #dd8452 #55a868 #c44e52 #8172b3 #937860 #da8bc3 #8c8c8c"
nv(j) = valid(j + 4) ? column(j + 4) : 0

plot for [j = 0:n-1] datafile using ($0 + off(j)):(nv(j)):(bw) with boxes \
		lc rgb word(colors, j % 8 + 1) title columnheader(j + 4), \
	for [j = 0:n-1] '' using ($0 + off(j)):(nv(j)):(stringcolumn(j + 4 + n)) with labels \
		rotate by 90 left offset 0,0.4 font "sans,9" notitle, \
	'' using 0:(0):xtic(stringcolumn(1) . "\n" . stringcolumn(2) . "\n" . stringcolumn(3) . " is better") with points ps 0 notitle, \
	1 with lines lc rgb "#888888" dt 2 notitle

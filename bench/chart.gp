# bench/chart.gp: the chart of docs/benchmarks.md, drawn by bench/run.
#   gnuplot -e "datadir='DIR'; out='FILE.png'; subtitle='...'" bench/chart.gp
# DIR holds echo.dat, latency.dat, io.dat and cpu_idle.dat (bench/run
# writes them): one row per worker, its label first.
set terminal pngcairo size 1500,820 font ",10" noenhanced
set output out
set multiplot layout 2,3 title "taskd and its peers (medians; ".subtitle.")" font ",13"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.8
set grid ytics
set key top right
set xtics nomirror
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0

set title "echo drain throughput, tasks/s (log scale)"
set xtics rotate by -20
set logscale y
set yrange [10:*]
plot datadir."/echo.dat" using 2:xtic(1) notitle lc rgb "#2a6f97", \
     "" using 0:2:(sprintf("%.0f", $2)) with labels offset 0,0.8 notitle
unset logscale y
set yrange [0:*]

set title "echo latency, ms (log scale)"
set logscale y
set yrange [0.1:*]
plot datadir."/latency.dat" using 2:xtic(1) title "p50" lc rgb "#2a6f97", \
     "" using 3 title "p99" lc rgb "#e07a5f"
unset logscale y
set yrange [0:*]
set xtics norotate

set title "I/O: 10,000 x sleep(1 s), wall time, s"
plot datadir."/io.dat" using 2:xtic(1) notitle lc rgb "#2a6f97", \
     "" using 0:2:(sprintf("%.2f", $2)) with labels offset 0,0.8 notitle

set title "I/O: peak PSS of the worker (all processes), MiB"
plot datadir."/io.dat" using 3:xtic(1) notitle lc rgb "#81b29a", \
     "" using 0:3:(sprintf("%.1f", $3)) with labels offset 0,0.8 notitle

set title "CPU: burn(50 ms) x N, wall time, s"
plot datadir."/cpu_idle.dat" using 2:xtic(1) notitle lc rgb "#2a6f97", \
     "" using 0:2:(sprintf("%.2f", $2)) with labels offset 0,0.8 notitle

set title "idle worker RSS, MiB"
plot datadir."/cpu_idle.dat" using 3:xtic(1) notitle lc rgb "#81b29a", \
     "" using 0:3:(sprintf("%.1f", $3)) with labels offset 0,0.8 notitle
unset multiplot

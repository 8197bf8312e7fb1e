# Draws one --log CSV of the examples as a PNG; examples/plots.sh sets
#   kind      'curves': csv holds epoch,loss,accuracy,val_accuracy,seconds
#             'regression': csv holds epoch,loss,slope,intercept,seconds, and
#             the .points.csv beside it (linear_regression --log) holds
#             series,x,y: the train and test points and the ends of the
#             fitted and the true line
#   csv, png  the log to read and the image to write
#   heading   the title over the whole image
#   terminal  pngcairo, or png where gnuplot has no cairo
# SPDX-License-Identifier: MIT

set datafile separator comma
set datafile columnheaders
set datafile missing ""
# noenhanced: the names hold underscores, which enhanced text sets as subscripts.
eval sprintf("set terminal %s noenhanced size 1280,560 font ',11'", terminal)
set output png
set grid
set border lw 1.2

stats csv using "epoch" nooutput
epochs = STATS_max
set xrange [0.5 : epochs + 0.5]
if (epochs <= 10) { set xtics 1 } else { set xtics autofreq }
set xlabel "epoch"

if (kind eq "curves") {
    # One epoch gives one point per series and no range to scale to: the
    # axes then start at 0, and the values are written beside the points.
    single = epochs == 1
    label_at(v) = single ? sprintf("  %.4f", v) : ""
    if (!single) { set offsets 0, 0, graph 0.05, graph 0.05 }
    set multiplot layout 1, 2 title heading font ",14"
    set title "training loss (mean over each epoch)"
    set ylabel "loss"
    # Where the curve is not: loss falls to the right.
    if (single) { set yrange [0:*]; set key bottom right } else { set key top right }
    plot csv using "epoch":"loss" with linespoints lw 2 pt 7 ps 1.2 lc rgb "#c0392b" title "loss", \
         csv using "epoch":"loss":(label_at(column("loss"))) with labels left notitle

    set title "accuracy per epoch"
    set ylabel "accuracy"
    # Accuracy rises to the right and leaves the bottom right corner free.
    set key bottom right
    if (single) { set yrange [0:1] }
    plot csv using "epoch":"accuracy" with linespoints lw 2 pt 7 ps 1.2 lc rgb "#2471a3" \
             title "accuracy (training, during the epoch)", \
         csv using "epoch":"val_accuracy" with linespoints lw 2 pt 5 ps 1.2 lc rgb "#239b56" \
             title "val_accuracy (held-out training images)", \
         csv using "epoch":"accuracy":(label_at(column("accuracy"))) with labels left notitle, \
         csv using "epoch":"val_accuracy":(label_at(column("val_accuracy"))) with labels left notitle
    unset multiplot
} else {
    # linear_regression writes FILE.points.csv beside FILE.csv.
    n = strlen(csv)
    points = (n > 4 && csv[n - 3:] eq ".csv") ? csv[1:n - 4] . ".points.csv" : csv . ".points.csv"

    # The fitted line is the last epoch's slope and intercept; the true line's
    # slope and intercept come from its two ends in the points file.
    stats csv using (slope = column("slope"), intercept = column("intercept")) nooutput
    k = 0
    stats points using (strcol(1) eq "true" ? (k = k + 1, k == 1 ? (x1 = $2, y1 = $3) : (x2 = $2, y2 = $3)) : 0) nooutput
    true_slope = (y2 - y1) / (x2 - x1)
    true_intercept = y1 - true_slope * x1

    set multiplot title heading font ",14"

    # Left, three fifths of the width: the data and the two lines.
    set size 0.6, 0.92
    set origin 0, 0
    set title "data and lines"
    set xrange [*:*]
    set xtics autofreq
    set xlabel "x"
    set ylabel "y"
    set key top left Left reverse box opaque
    # The two lines nearly coincide: the true one is drawn last, dashed, so
    # the fitted one shows between its dashes.
    plot points using 2:(strcol(1) eq "train" ? $3 : NaN) with points pt 7 ps 0.45 lc rgb "#7fb3d5" \
             title "training points", \
         points using 2:(strcol(1) eq "test" ? $3 : NaN) with points pt 7 ps 0.45 lc rgb "#f0b27a" \
             title "test points", \
         points using 2:(strcol(1) eq "fitted" ? $3 : NaN) with lines lw 4 lc rgb "#c0392b" \
             title sprintf("fitted  y = %.4f x + %.4f", slope, intercept), \
         points using 2:(strcol(1) eq "true" ? $3 : NaN) with lines lw 2 dt (6, 5) lc rgb "#000000" \
             title sprintf("true    y = %g x + %g", true_slope, true_intercept)

    # Right: how the fit got there, epoch by epoch.
    set xrange [0.5 : epochs + 0.5]
    if (epochs <= 10) { set xtics 1 } else { set xtics autofreq }
    set xlabel "epoch"
    set key top right nobox
    set size 0.4, 0.46
    set origin 0.6, 0.46
    set title "training loss (MSE, mean over each epoch)"
    set ylabel "loss"
    set logscale y
    plot csv using "epoch":"loss" with linespoints lw 2 pt 7 lc rgb "#c0392b" title "loss"
    unset logscale y

    set origin 0.6, 0
    set title "parameters after each epoch"
    set ylabel "value"
    # Room above the slope for the legend.
    set yrange [0 : 1.5 * (true_slope > true_intercept ? true_slope : true_intercept) + 0.5]
    set key top right horizontal maxrows 2
    plot csv using "epoch":"slope" with linespoints lw 2 pt 7 lc rgb "#2471a3" title "slope", \
         csv using "epoch":"intercept" with linespoints lw 2 pt 5 lc rgb "#239b56" title "intercept", \
         true_slope with lines dt 2 lc rgb "#2471a3" title "true slope", \
         true_intercept with lines dt 2 lc rgb "#239b56" title "true intercept"
    unset multiplot
}

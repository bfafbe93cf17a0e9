# malloc_table.awk - the tables of bench/malloc (POSIX awk; mawk is enough).
#
# Input: one line per benchmark run, key=value pairs: alloc=NAME T=THREADS
# rep=N and then the benchmark's own "result:" fields (mops, secs, ns per
# pattern, notrav<bin>, maxrss_kb, rss_start_kb, rss_end_kb, ...).  Every
# figure printed is the median over the repetitions.
#
# Variables (-v):
#   allocs  the allocators, in row (or column) order; "umpa" among them
#           adds the ratio columns, each oriented so that > 1 means umpa is
#           better (faster, or less memory)
#   better  "higher" (throughput) or "lower" (time, ns)
#   mode    "rows": one row per allocator; cols = "T:key:label ..." the
#           figure columns, then peak RSS, end/start and kept KiB (the
#           anonymous memory still resident after free + malloc_trim, less
#           that at start), then ratios
#           "bins": fig7 style, one row per size bin of `key`
#           (notrav<i> / touch<i>), one column per allocator, then ratios
#   cols, key, nbins  as described above

function median(s,    a, n, i, j, t) {
  n = split(s, a, " ")
  if (n == 0) return ""
  for (i = 2; i <= n; i++)
    for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
      t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
    }
  return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}

# Three or four significant digits, without exponents.
function num(v,    m) {
  if (v == "") return "-"
  v += 0
  m = v < 0 ? -v : v
  if (m >= 1000) return sprintf("%.0f", v)
  if (m >= 100) return sprintf("%.1f", v)
  if (m >= 10) return sprintf("%.2f", v)
  if (m >= 1 || m == 0) return sprintf("%.3f", v)
  if (m >= 0.001) return sprintf("%.4f", v)
  return sprintf("%.6f", v)
}

function ratio(num_, den) {
  if (num_ == "" || den == "" || den + 0 == 0) return "-"
  return sprintf("%.2f", num_ / den)
}

function cell(r, c, s) {
  text[r, c] = s
  if (length(s) > width[c]) width[c] = length(s)
  if (r + 1 > nrows) nrows = r + 1
  if (c + 1 > ncols) ncols = c + 1
}

function print_table(    r, c, line, total, i) {
  total = 0
  for (r = 0; r < nrows; r++) {
    line = ""
    for (c = 0; c < ncols; c++) {
      if (c == 0) line = sprintf("%-" width[0] "s", text[r, c])
      else line = line sprintf("  %" width[c] "s", text[r, c])
    }
    print line
    if (r == 0) {
      total = length(line)
      line = ""
      for (i = 0; i < total; i++) line = line "-"
      print line
    }
  }
}

# v(alloc, threads, key): the median of that figure, "" when no run gave it.
function v(a, t, k) {
  return ((a, t, k) in vals) ? median(vals[a, t, k]) : ""
}

{
  delete f
  for (i = 1; i <= NF; i++) {
    eq = index($i, "=")
    if (eq > 1) f[substr($i, 1, eq - 1)] = substr($i, eq + 1)
  }
  if (("rss_start_kb" in f) && ("rss_end_kb" in f) && f["rss_start_kb"] > 0)
    f["end_start"] = f["rss_end_kb"] / f["rss_start_kb"]
  if (("anon_start_kb" in f) && ("anon_end_kb" in f))
    f["anon_kept"] = f["anon_end_kb"] - f["anon_start_kb"]
  if ("maxrss_kb" in f) f["peak_mib"] = f["maxrss_kb"] / 1024
  for (k in f) vals[f["alloc"], f["T"], k] = vals[f["alloc"], f["T"], k] " " f[k]
}

END {
  na = split(allocs, A, " ")
  umpa = 0
  for (i = 1; i <= na; i++) if (A[i] == "umpa") umpa = 1
  nrows = 0; ncols = 0

  if (mode == "bins") {
    # Rows: size bins; columns: allocators, then X/umpa per peer.
    cell(0, 0, "bin")
    for (i = 1; i <= na; i++) cell(0, i, A[i])
    c = na + 1
    if (umpa) for (i = 1; i <= na; i++) if (A[i] != "umpa") cell(0, c++, A[i] "/umpa")
    for (b = 0; b < nbins; b++) {
      lo = 4 * 2 ^ b; hi = 2 * lo
      lab = lo >= 1024 ? (lo / 1024) "-" (hi / 1024) " MiB" : \
            hi >= 1024 ? lo " KiB-" (hi / 1024) " MiB" : lo "-" hi " KiB"
      cell(b + 1, 0, lab)
      for (i = 1; i <= na; i++) cell(b + 1, i, num(v(A[i], 1, key b)))
      c = na + 1
      if (umpa)
        for (i = 1; i <= na; i++)
          if (A[i] != "umpa")
            cell(b + 1, c++, ratio(v(A[i], 1, key b), v("umpa", 1, key b)))
    }
    print_table()
    exit
  }

  # mode == "rows": one row per allocator.
  nc = split(cols, C, " ")
  maxt = 0
  for (j = 1; j <= nc; j++) {
    split(C[j], p, ":")
    CT[j] = p[1]; CK[j] = p[2]; CL[j] = p[3]
    if (CT[j] + 0 > maxt) maxt = CT[j] + 0
  }
  cell(0, 0, "allocator")
  for (j = 1; j <= nc; j++) cell(0, j, CL[j])
  cell(0, nc + 1, "peak MiB")
  cell(0, nc + 2, "end/start")
  cell(0, nc + 3, "kept KiB")
  if (umpa) {
    for (j = 1; j <= nc; j++)
      cell(0, nc + 3 + j, (better == "higher" ? "umpa/X " : "X/umpa ") CL[j])
    cell(0, 2 * nc + 4, "X/umpa peak")
  }
  for (i = 1; i <= na; i++) {
    a = A[i]
    cell(i, 0, a)
    peak = ""
    for (j = 1; j <= nc; j++) {
      cell(i, j, num(v(a, CT[j], CK[j])))
      pm = v(a, CT[j], "peak_mib")
      if (pm != "" && (peak == "" || pm + 0 > peak + 0)) peak = pm
    }
    cell(i, nc + 1, num(peak))
    es = v(a, maxt, "end_start")
    cell(i, nc + 2, es == "" ? "-" : sprintf("%.2f", es))
    kept = v(a, maxt, "anon_kept")
    cell(i, nc + 3, kept == "" ? "-" : sprintf("%+d", kept))
    if (!umpa) continue
    for (j = 1; j <= nc; j++) {
      x = v(a, CT[j], CK[j]); u = v("umpa", CT[j], CK[j])
      if (a == "umpa") r = "-"
      else if (better == "higher") r = ratio(u, x)
      else r = ratio(x, u)
      cell(i, nc + 3 + j, r)
    }
    upeak = ""
    for (j = 1; j <= nc; j++) {
      pm = v("umpa", CT[j], "peak_mib")
      if (pm != "" && (upeak == "" || pm + 0 > upeak + 0)) upeak = pm
    }
    cell(i, 2 * nc + 4, a == "umpa" ? "-" : ratio(peak, upeak))
  }
  print_table()
}

# Writes n seeded lines "WORD WORD<TAB>NUMBER<TAB>HEX...": about 60 bytes
# each.  Lines are drawn from fewer distinct values than n, so there are
# exact duplicates (for sort -u); a line is a function of its value, so
# equal keys mean equal lines and every sort order is unique.
# Usage: awk -v n=1000000 -f gen_sort.awk > lines.txt
BEGIN {
  srand(777)
  if (n == "") n = 1000000
  nv = 5000
  for (i = 0; i < nv; i++) {
    w = ""
    m = 3 + int(rand() * 10)
    for (j = 0; j < m; j++) w = w substr("abcdefghijklmnopqrstuvwxyz", 1 + int(rand() * 26), 1)
    vocab[i] = w
  }
  distinct = int(n * 0.7)
  for (i = 0; i < n; i++) {
    v = int(rand() * distinct)
    a = (v * 7919 + 13) % 1000003
    b = (v * 104729 + 7) % 2147483647
    printf "%s %s\t%d\t%08x%06x %s\n", vocab[v % nv], vocab[(v * 31 + 17) % nv], \
      b % 10000000, (v * 2654435761) % 4294967296, a, vocab[a % nv]
  }
}

# Writes a SQL workload for the sqlite3 shell: tables filled by tens of
# thousands of INSERTs in transactions, indexes, joins, aggregates, GROUP BY,
# ORDER BY, window functions, updates, deletes, recursive CTEs, VACUUM.
# Every query that prints rows has a total ORDER BY, so the output is fixed.
# Usage: awk -v scale=1 -f gen_sql.awk > workload.sql
function r(n) { return int(rand() * n) }
function word(   n, s, i) {
  n = 3 + r(8); s = ""
  for (i = 0; i < n; i++) s = s substr("abcdefghijklmnopqrstuvwxyz", 1 + r(26), 1)
  return s
}
BEGIN {
  srand(4242)
  if (scale == "") scale = 1
  ncust = 10000 * scale; nprod = 3000 * scale; nord = 100000 * scale
  print ".headers off"
  print ".mode list"
  print "PRAGMA journal_mode = WAL;"
  print "PRAGMA cache_size = -8000;"
  print "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, since INTEGER);"
  print "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL);"
  print "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), product_id INTEGER REFERENCES products(id), qty INTEGER, day INTEGER, note TEXT);"
  print "CREATE TABLE staff (id INTEGER PRIMARY KEY, boss INTEGER, name TEXT);"
  ncity = 40
  for (i = 0; i < ncity; i++) city[i] = word()
  print "BEGIN;"
  for (i = 1; i <= ncust; i++)
    printf "INSERT INTO customers VALUES (%d, '%s %s', '%s', %d);\n", i, word(), word(), city[r(ncity)], 2000 + r(25)
  print "COMMIT;"
  print "BEGIN;"
  for (i = 1; i <= nprod; i++)
    printf "INSERT INTO products VALUES (%d, '%s', 'cat%d', %d.%02d);\n", i, word(), r(30), 1 + r(500), r(100)
  print "COMMIT;"
  for (i = 1; i <= nord; i++) {
    if (i % 5000 == 1) print "BEGIN;"
    note = (r(4) == 0) ? "'" word() " " word() " " word() "'" : "NULL"
    printf "INSERT INTO orders VALUES (%d, %d, %d, %d, %d, %s);\n", i, 1 + r(ncust), 1 + r(nprod), 1 + r(20), r(3650), note
    if (i % 5000 == 0 || i == nord) print "COMMIT;"
  }
  print "BEGIN;"
  print "INSERT INTO staff VALUES (1, NULL, 'root');"
  for (i = 2; i <= 3000; i++) printf "INSERT INTO staff VALUES (%d, %d, '%s');\n", i, 1 + r(i - 1), word()
  print "COMMIT;"

  print "CREATE INDEX orders_customer ON orders(customer_id);"
  print "CREATE INDEX orders_product_day ON orders(product_id, day);"
  print "CREATE INDEX customers_city ON customers(city, name);"
  print "CREATE INDEX staff_boss ON staff(boss);"
  print "ANALYZE;"

  print "SELECT 'counts', (SELECT count(*) FROM customers), (SELECT count(*) FROM products), (SELECT count(*) FROM orders);"
  print "SELECT c.city, count(*), sum(o.qty), printf('%.2f', sum(o.qty * p.price)) FROM orders o JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id GROUP BY c.city ORDER BY c.city;"
  print "SELECT p.category, count(DISTINCT o.customer_id), min(p.price), max(p.price), printf('%.4f', avg(o.qty)) FROM products p LEFT JOIN orders o ON o.product_id = p.id GROUP BY p.category ORDER BY 2 DESC, 1;"
  print "SELECT c.id, c.name, count(o.id) AS n FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id HAVING n >= 15 ORDER BY n DESC, c.id LIMIT 40;"
  print "SELECT day / 365 AS year, count(*), sum(qty) FROM orders GROUP BY year ORDER BY year;"
  print "SELECT customer_id, day, qty, sum(qty) OVER (PARTITION BY customer_id ORDER BY day, id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM orders WHERE customer_id % 250 = 0 ORDER BY customer_id, day, id;"
  print "SELECT name, rank() OVER (ORDER BY price DESC, id) FROM products ORDER BY price DESC, id LIMIT 25;"
  print "SELECT group_concat(name, ',') FROM (SELECT name FROM customers WHERE city = (SELECT city FROM customers ORDER BY id LIMIT 1) ORDER BY name, id);"
  print "SELECT length(group_concat(note, '|')), count(note) FROM (SELECT note FROM orders WHERE note IS NOT NULL ORDER BY id);"
  print "SELECT upper(substr(name, 1, 3)), count(*) FROM customers GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20;"

  # Updates and deletes, then the same aggregates again.
  print "BEGIN;"
  print "UPDATE products SET price = round(price * 1.1, 2) WHERE category IN ('cat1', 'cat2', 'cat3');"
  print "UPDATE orders SET qty = qty + 1, note = coalesce(note, '') || ' upd' WHERE day % 10 = 3;"
  print "DELETE FROM orders WHERE customer_id % 17 = 0;"
  print "DELETE FROM customers WHERE id NOT IN (SELECT customer_id FROM orders);"
  print "INSERT INTO orders (customer_id, product_id, qty, day, note) SELECT customer_id, product_id, qty * 2, day + 1, 'copy' FROM orders WHERE id % 9 = 0;"
  print "COMMIT;"
  print "SELECT 'after', (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), (SELECT sum(qty) FROM orders), (SELECT printf('%.2f', sum(price)) FROM products);"
  print "SELECT c.city, count(*), sum(o.qty) FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.city ORDER BY c.city;"

  # Recursive CTEs: a sequence, the staff tree, and a Mandelbrot picture.
  print "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 100000) SELECT count(*), sum(n), sum(n * n % 1009) FROM seq;"
  print "CREATE TABLE squares AS WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 50000) SELECT n, n * n AS sq, printf('%08x', n * 2654435761 % 4294967296) AS h FROM seq;"
  print "SELECT count(*), count(DISTINCT substr(h, 1, 3)), max(h) FROM squares;"
  print "WITH RECURSIVE tree(id, depth, path) AS (SELECT id, 0, name FROM staff WHERE boss IS NULL UNION ALL SELECT s.id, t.depth + 1, t.path || '/' || s.name FROM staff s JOIN tree t ON s.boss = t.id) SELECT depth, count(*), max(length(path)) FROM tree GROUP BY depth ORDER BY depth;"
  print "WITH RECURSIVE tree(id, depth, path) AS (SELECT id, 0, name FROM staff WHERE boss IS NULL UNION ALL SELECT s.id, t.depth + 1, t.path || '/' || s.name FROM staff s JOIN tree t ON s.boss = t.id) SELECT id, path FROM tree ORDER BY depth DESC, id LIMIT 5;"
  print "WITH RECURSIVE xaxis(x) AS (VALUES(-2.0) UNION ALL SELECT x + 0.05 FROM xaxis WHERE x < 1.2), yaxis(y) AS (VALUES(-1.0) UNION ALL SELECT y + 0.1 FROM yaxis WHERE y < 1.0), m(iter, cx, cy, x, y) AS (SELECT 0, x, y, 0.0, 0.0 FROM xaxis, yaxis UNION ALL SELECT iter + 1, cx, cy, x * x - y * y + cx, 2.0 * x * y + cy FROM m WHERE (x * x + y * y) < 4.0 AND iter < 28), m2(iter, cx, cy) AS (SELECT max(iter), cx, cy FROM m GROUP BY cx, cy), a(t) AS (SELECT group_concat(substr(' .+*#', 1 + min(iter / 7, 4), 1), '') FROM m2 GROUP BY cy ORDER BY cy) SELECT group_concat(rtrim(t), char(10)) FROM a;"

  # JSON and a big sort through a temporary B-tree.
  print "SELECT count(*), sum(json_extract(j, '$.q')) FROM (SELECT json_object('id', id, 'q', qty, 'n', note) AS j FROM orders);"
  print "SELECT id, customer_id FROM orders ORDER BY note DESC, qty, id LIMIT 10;"
  print "DROP INDEX orders_product_day;"
  print "VACUUM;"
  print "PRAGMA integrity_check;"
  print "SELECT 'end', (SELECT count(*) FROM orders), (SELECT total(qty) FROM orders);"
}

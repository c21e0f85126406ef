-- Demo data: a small shop. The agent's database role may read and write
-- everything here; sluice's policies are what keep it to its task.
CREATE TABLE IF NOT EXISTS customers (
  id    serial PRIMARY KEY,
  name  text NOT NULL,
  email text NOT NULL,
  ssn   text
);
CREATE TABLE IF NOT EXISTS orders (
  id          serial PRIMARY KEY,
  customer_id int REFERENCES customers(id),
  total_cents int NOT NULL,
  placed_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customers (name, email, ssn)
SELECT 'Customer ' || g, 'customer' || g || '@example.com', lpad(g::text, 3, '0') || '-45-6789'
FROM generate_series(1, 50) g
WHERE NOT EXISTS (SELECT 1 FROM customers);
INSERT INTO orders (customer_id, total_cents)
SELECT 1 + g % 50, 100 * g FROM generate_series(1, 200) g
WHERE NOT EXISTS (SELECT 1 FROM orders);

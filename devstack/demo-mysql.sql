CREATE TABLE IF NOT EXISTS customers (
  id    int AUTO_INCREMENT PRIMARY KEY,
  name  varchar(100) NOT NULL,
  email varchar(200) NOT NULL,
  ssn   varchar(20)
);
CREATE TABLE IF NOT EXISTS orders (
  id          int AUTO_INCREMENT PRIMARY KEY,
  customer_id int,
  total_cents int NOT NULL,
  placed_at   timestamp NOT NULL DEFAULT current_timestamp
);
INSERT INTO customers (name, email, ssn)
SELECT concat('Customer ', seq), concat('customer', seq, '@example.com'), concat(lpad(seq, 3, '0'), '-45-6789')
FROM seq_1_to_50 WHERE NOT EXISTS (SELECT 1 FROM customers);
INSERT INTO orders (customer_id, total_cents)
SELECT 1 + seq % 50, 100 * seq FROM seq_1_to_200 WHERE NOT EXISTS (SELECT 1 FROM orders);

-- The example service's business table.
CREATE TABLE orders (
    id          uuid PRIMARY KEY,
    customer    text        NOT NULL,
    amount_cents bigint     NOT NULL CHECK (amount_cents >= 0),
    status      text        NOT NULL DEFAULT 'created',
    created_at  timestamptz NOT NULL DEFAULT now()
);

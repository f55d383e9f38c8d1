-- Callbacks waiting to be sent: written in the transaction that ends their verification, deleted
-- once the receiver answers 2xx. Times are real-time milliseconds since the Unix epoch.
create table callback (
    -- stable across retries: the receiver de-duplicates on it
    id text primary key,
    request_id text not null,
    account text not null,
    -- who is told (a Verify v2 application)
    target text not null,
    -- step_ended | ended
    notice text not null,
    attempts bigint not null default 0,
    next_attempt_at bigint not null,
    -- a sender holds it until then
    lease_until bigint not null default 0,
    -- how many times it was claimed: a sender records its result only under its own claim
    claims bigint not null default 0,
    created_at bigint not null
);
create index callback_due on callback (next_attempt_at);

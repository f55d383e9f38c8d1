-- Every try to deliver an event on a channel, and the receipts gateways post about them.
-- Times are real-time milliseconds since the Unix epoch.
create table delivery_attempt (
    id integer primary key,
    request_id text not null,
    event_id text not null,
    -- sms | voice
    kind text not null,
    channel text not null,
    -- the gateway's id for the message, once it has accepted it
    message_id text,
    -- queued | submitted | delivered | undeliverable | failed
    state text not null,
    error_code text,
    error_text text,
    created_at integer not null,
    updated_at integer not null
);
create index delivery_attempt_event on delivery_attempt (request_id, event_id);
-- Not unique: a gateway may give two messages one id (a webhook's pointer to a field that is
-- not an id); a receipt then applies to both.
create index delivery_attempt_message on delivery_attempt (channel, message_id)
    where message_id is not null;

-- A receipt that arrived before its try's acceptance was recorded; applied when it is.
create table delivery_receipt (
    channel text not null,
    message_id text not null,
    state text not null,
    error_code text,
    error_text text,
    received_at integer not null,
    primary key (channel, message_id)
);
-- Receipts that never meet their try (later parts of a long message, other traffic of the
-- account) are dropped after a day.
create index delivery_receipt_received on delivery_receipt (received_at);

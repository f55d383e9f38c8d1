-- Deliveries and inbox messages are found by (request id, event id) instead of by event id alone.
-- Request ids begin with their creation time and event ids are random: an index that starts with
-- the request id grows at its end, so a group commit of new requests updates a few shared pages
-- instead of one random page per row. Rowids keep insertion order, which replaces the index on
-- created_at.

create table delivery_by_request (
    request_id text not null,
    event_id text not null,
    body text not null,
    created_at integer not null,
    lease_until integer not null
);
insert into delivery_by_request (request_id, event_id, body, created_at, lease_until)
    select request_id, event_id, body, created_at, lease_until from delivery order by created_at;
drop table delivery;
alter table delivery_by_request rename to delivery;
create unique index delivery_key on delivery (request_id, event_id);
create index delivery_lease on delivery (lease_until);

create table inbox_message_by_request (
    seq integer primary key autoincrement,
    message_id text not null,
    channel text not null,
    to_number text not null,
    from_id text not null,
    text text not null,
    locale text not null,
    request_id text not null,
    created_at integer not null
);
insert into inbox_message_by_request
    select seq, message_id, channel, to_number, from_id, text, locale, request_id, created_at
    from inbox_message order by seq;
drop table inbox_message;
alter table inbox_message_by_request rename to inbox_message;
create unique index inbox_message_key on inbox_message (request_id, message_id);
create index inbox_message_to on inbox_message (to_number, seq);

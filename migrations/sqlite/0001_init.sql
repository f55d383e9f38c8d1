-- Times are integer milliseconds since the Unix epoch (UTC), "_at" columns included.

create table verification (
    request_id text primary key,
    account text not null,
    number text not null,
    -- 0 in progress, 1 success, 2 failed, 3 expired, 4 cancelled (domain::Status::code);
    -- -1 set aside because its body could not be read (logged when it happens)
    state integer not null,
    -- when the scheduler must look at this row again; null once it has ended
    next_due_at integer,
    submitted_at integer not null,
    -- the domain's Verification as JSON; the columns above are copies kept for indexes
    body text not null
);

-- One verification in progress per number and API key (status 10). The writer checks this first;
-- the index is what makes it true whatever the code does.
create unique index verification_active_number on verification (account, number) where state = 0;
create index verification_due on verification (next_due_at) where state = 0;

-- Deliveries committed with the step that produced them and removed once the channel took them.
-- Each is leased (real time) to the process that will send it; one whose lease ran out is sent by
-- the next sweep. Removed as well when its request ends: they hold a sealed copy of the PIN.
create table delivery (
    event_id text primary key,
    request_id text not null,
    body text not null,
    created_at integer not null,
    lease_until integer not null
);
create index delivery_request on delivery (request_id);
create index delivery_lease on delivery (lease_until);
create index delivery_created on delivery (created_at);

create table inbox_message (
    seq integer primary key autoincrement,
    message_id text not null unique,
    channel text not null,
    to_number text not null,
    from_id text not null,
    text text not null,
    locale text not null,
    request_id text not null,
    created_at integer not null
);
create index inbox_message_to on inbox_message (to_number, seq);

create table api_key (
    api_key text primary key,
    name text not null,
    secret_hash blob not null,
    -- 0 active, 1 disabled, 2 revoked
    state integer not null,
    allow_custom_pin integer not null,
    created_at integer not null
);

create table meta (
    name text primary key,
    value text not null
);

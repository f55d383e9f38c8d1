-- Conversion monitoring (domain/fraud.rs). Sends and conversions per account, subject
-- (`prefix:…`, `country:…`, `ip:…`) and hour (ms); conversions are counted in their send's hour.
create table fraud_tally (
    account text not null,
    subject text not null,
    hour integer not null,
    sent integer not null default 0,
    converted integer not null default 0,
    primary key (account, subject, hour)
) without rowid;
create index fraud_tally_hour on fraud_tally (hour);
-- A subject's block: in force until `blocked_until` (ms), `times` blocks so far, none while
-- `exempt_until` (ms) is ahead (network-unblock).
create table fraud_block (
    account text not null,
    subject text not null,
    network text,
    blocked_until integer not null,
    times integer not null,
    exempt_until integer not null default 0,
    reason text not null,
    primary key (account, subject)
) without rowid;
create index fraud_block_network on fraud_block (account, network);
-- Every decision of the monitor, with its reason.
create table fraud_decision (
    id integer primary key,
    account text not null,
    subject text not null,
    action text not null,
    reason text not null,
    at integer not null,
    until integer
);
create index fraud_decision_at on fraud_decision (account, at);

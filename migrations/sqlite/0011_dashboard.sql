-- The dashboard (docs/operations.md, "Dashboard"): its users, what they did, and what its pages
-- look up.

-- Admin users, made with `verifyd admin create`. The password only as an argon2id PHC string.
create table admin_user (
    name text primary key,
    password_hash text not null,
    created_at integer not null
);

-- Every change an admin made through the dashboard (and its logins), newest last.
create table audit_log (
    seq integer primary key autoincrement,
    at integer not null,
    admin text not null,
    action text not null,
    target text not null,
    detail text not null
);
create index audit_log_at on audit_log (at);

-- The route a try took (null for tries recorded before routes were kept, and for the inbox).
alter table delivery_attempt add column route text;
-- The charts read the tries of the last hours or days.
create index delivery_attempt_created on delivery_attempt (created_at);

-- A search by number, newest first.
create index verification_number on verification (number, submitted_at);

-- Counters of the limits (domain/limits.rs): hits per bucket per fixed window; a window and the
-- one before it make the sliding window. A row is of no use once the window after it has passed
-- (`expires_at`, ms): a bucket's older rows go when it is counted again, and a sweep deletes the
-- rest.
create table limit_counter (
    bucket text not null,
    window_start integer not null,
    hits integer not null,
    expires_at integer not null,
    primary key (bucket, window_start)
) without rowid;
create index limit_counter_expiry on limit_counter (expires_at);

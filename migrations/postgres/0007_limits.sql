-- Counters of the limits (domain/limits.rs): hits per bucket per fixed window; a window and the
-- one before it make the sliding window. Older windows are deleted as their bucket is counted.
create table limit_counter (
    bucket text not null,
    window_start bigint not null,
    hits bigint not null,
    primary key (bucket, window_start)
);

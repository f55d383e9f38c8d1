-- A key's own limits in place of the file's `[limits]` (`verifyd keys limits`), as
-- `name=value` pairs separated by spaces; empty when it has none.
alter table api_key add column limits text not null default '';

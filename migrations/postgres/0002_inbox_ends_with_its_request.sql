-- An inbox message shows a PIN in clear: it is kept only while its verification is in progress.
-- From this version on the row goes in the transaction that ends the verification (found by
-- this index); these are the messages of verifications that ended before.
create index inbox_message_request on inbox_message (request_id);
delete from inbox_message m
where not exists (
    select 1 from verification v where v.request_id = m.request_id and v.state = 0
);

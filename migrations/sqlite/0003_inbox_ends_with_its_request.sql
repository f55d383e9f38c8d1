-- An inbox message shows a PIN in clear: it is kept only while its verification is in progress.
-- From this version on the row goes in the transaction that ends the verification; these are
-- the messages of verifications that ended before.
delete from inbox_message
where not exists (
    select 1 from verification v where v.request_id = inbox_message.request_id and v.state = 0
);

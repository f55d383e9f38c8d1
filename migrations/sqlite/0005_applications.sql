-- Verify v2 applications: a JWT names one, and is checked against its public key. Requests made
-- with it belong to its API key. The signature secret signs callbacks, so it is kept sealed with
-- the server key, not hashed.
create table application (
    application_id text primary key,
    api_key text not null references api_key (api_key),
    -- PEM, as given to `verifyd apps create`
    public_key text not null,
    status_url text,
    signature_secret_sealed blob not null,
    created_at integer not null
);

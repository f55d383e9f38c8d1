-- Verify v2 templates: an account's own words for its messages. A template has at most one
-- fragment per channel and locale; an account has at most one default template, which requests
-- that name no template use. Writes lock the account's api_key row, so that two nodes cannot
-- both add an account's eleventh template.
create table template (
    template_id text primary key,
    api_key text not null references api_key (api_key),
    name text not null,
    is_default boolean not null default false,
    created_at bigint not null,
    -- the order of creation, for lists: several may be created in one millisecond
    position bigint generated always as identity,
    unique (api_key, name)
);
create unique index template_one_default on template (api_key) where is_default;

create table template_fragment (
    fragment_id text primary key,
    template_id text not null references template (template_id),
    -- sms, voice or email
    channel text not null,
    locale text not null,
    text text not null,
    created_at bigint not null,
    updated_at bigint not null,
    position bigint generated always as identity,
    unique (template_id, channel, locale)
);

-- Verify v2 templates: an account's own words for its messages. A template has at most one
-- fragment per channel and locale; an account has at most one default template, which requests
-- that name no template use. Lists are in the order of creation (created_at, then rowid: several
-- may be created in one millisecond).
create table template (
    template_id text primary key,
    api_key text not null references api_key (api_key),
    name text not null,
    is_default integer not null default 0,
    created_at integer not null,
    unique (api_key, name)
);
create unique index template_one_default on template (api_key) where is_default = 1;

create table template_fragment (
    fragment_id text primary key,
    template_id text not null references template (template_id),
    -- sms, voice or email
    channel text not null,
    locale text not null,
    text text not null,
    created_at integer not null,
    updated_at integer not null,
    unique (template_id, channel, locale)
);

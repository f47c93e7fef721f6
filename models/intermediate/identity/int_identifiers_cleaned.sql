{#-
    Rule "identifiers": trimmed, and junk values (seed junk_identifiers, case-insensitive) never identify anyone.
    A view: one row per event, and cleaning is cheaper than writing (and reading back) a million-row table; its
    three readers each take a few columns.
-#}
{{ config(materialized='view') }}

with

events as (

    select * from {{ ref('stg_segment__events') }}

),

junk_identifiers as (

    select {{ segment_accounts.normalized_identifier('identifier') }} as junk_identifier
    from {{ ref('junk_identifiers') }}
    where identifier is not null

    union

    -- always junk, and cannot be a seed row: dbt's CSV reader turns the text `null` into a SQL null (DuckDB's
    -- native CSV load is the one exception)
    select 'null' as junk_identifier

),

trimmed as (

    select
        events.event_id,
        events.connection_id,
        events.message_id,
        events.message_type,
        events.occurred_at,
        events.received_at,
        {{ segment_accounts.clean_identifier('events.user_id') }} as user_id,
        {{ segment_accounts.clean_identifier('events.anonymous_id') }} as anonymous_id,
        {{ segment_accounts.clean_identifier('events.previous_id') }} as previous_id
    from events

),

final as (

    select
        event_id,
        connection_id,
        message_id,
        message_type,
        occurred_at,
        received_at,
        case
            when lower(user_id) not in (select junk_identifiers.junk_identifier from junk_identifiers)
                then user_id
        end as user_id,
        case
            when lower(anonymous_id) not in (select junk_identifiers.junk_identifier from junk_identifiers)
                then anonymous_id
        end as anonymous_id,
        case
            when lower(previous_id) not in (select junk_identifiers.junk_identifier from junk_identifiers)
                then previous_id
        end as previous_id
    from trimmed

)

select * from final

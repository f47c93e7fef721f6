{#-
    Rule "identifiers": trimmed, and junk values (seed junk_identifiers, case-insensitive) never identify anyone.
    A view: one row per event, and cleaning is cheaper than writing (and reading back) a million-row table; its
    two readers (int_identifier_calls_summarized, int_events_identified) take only the new loads' events on an
    incremental run, with the load ids written as literals (macro in_loads_not_read) so that the scan skips the rest.
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
        events._dlt_load_id,
        {{ segment_accounts.clean_identifier('events.user_id') }} as user_id,
        {{ segment_accounts.clean_identifier('events.anonymous_id') }} as anonymous_id,
        {{ segment_accounts.clean_identifier('events.previous_id') }} as previous_id
    from events

),

final as (

    -- left joins, not `not in (subquery)`: a null in the list would empty that
    select
        trimmed.event_id,
        trimmed.connection_id,
        trimmed.message_id,
        trimmed.message_type,
        trimmed.occurred_at,
        trimmed.received_at,
        trimmed._dlt_load_id,
        case when junk_user_ids.junk_identifier is null then trimmed.user_id end as user_id,
        case when junk_anonymous_ids.junk_identifier is null then trimmed.anonymous_id end as anonymous_id,
        case when junk_previous_ids.junk_identifier is null then trimmed.previous_id end as previous_id
    from trimmed
    left join junk_identifiers as junk_user_ids
        on lower(trimmed.user_id) = junk_user_ids.junk_identifier
    left join junk_identifiers as junk_anonymous_ids
        on lower(trimmed.anonymous_id) = junk_anonymous_ids.junk_identifier
    left join junk_identifiers as junk_previous_ids
        on lower(trimmed.previous_id) = junk_previous_ids.junk_identifier

)

select * from final

{#-
    Rule "dedup": one event per (connection, messageId), the first received wins. Also the one place where the
    common fields of every message are typed: ids, the time rule, the type mapping.
    A table, not a view: the JSON is parsed once here rather than by every model downstream.
-#}
{{ config(materialized='table') }}

with

raw_events as (

    select * from {{ source('segment', 'raw_events') }}

),

numbered as (

    -- at-least-once delivery and loader retries both produce copies. The order is total and uses only what
    -- the spool determines (not dlt's random row id), so a raw layer rebuilt from the spool picks the same copy.
    select
        *,
        row_number() over (
            partition by connection_id, message_id
            order by received_at, _dlt_load_id, payload
        ) as copy_number
    from raw_events

),

deduplicated as (

    select * from numbered
    where copy_number = 1

),

json_parsed as (

    -- parse each payload once (Postgres: the one place where a \u0000 escape is made storable); every field
    -- below reads the parsed value, never the raw text again
    select
        connection_id,
        message_id,
        received_at,
        {{ segment_accounts.parse_json('payload') }} as payload
    from deduplicated

),

parsed as (

    select
        connection_id,
        message_id,
        payload,
        {{ segment_accounts.to_utc_timestamp('received_at') }} as received_at,
        lower({{ segment_accounts.json_text('payload', ['type']) }}) as message_type,
        {{ segment_accounts.segment_field('payload', 'userId') }} as user_id,
        {{ segment_accounts.segment_field('payload', 'anonymousId') }} as anonymous_id,
        {{ segment_accounts.iso8601_to_utc(segment_accounts.json_text('payload', ['timestamp'])) }}
            as event_timestamp,
        {{ segment_accounts.iso8601_to_utc(segment_accounts.segment_field('payload', 'originalTimestamp')) }}
            as original_timestamp,
        {{ segment_accounts.iso8601_to_utc(segment_accounts.segment_field('payload', 'sentAt')) }} as sent_at,
        {{ segment_accounts.iso8601_to_utc(segment_accounts.segment_field('payload', 'receivedAt')) }}
            as payload_received_at
    from json_parsed

),

final as (

    select
        {{ dbt.hash(dbt.concat(['connection_id', "'|'", 'message_id'])) }} as event_id,
        connection_id,
        message_id,
        message_type,
        {{ segment_accounts.segment_event_type('message_type') }} as event_type,
        case message_type
            when 'track' then {{ segment_accounts.json_text('payload', ['event']) }}
            when 'page' then {{ segment_accounts.json_text('payload', ['name']) }}
            when 'screen' then {{ segment_accounts.json_text('payload', ['name']) }}
        end as event_name,
        user_id,
        anonymous_id,
        {{ segment_accounts.json_text('payload', ['context', 'groupId']) }} as context_group_id,
        {{ segment_accounts.segment_occurred_at(
            'event_timestamp',
            'coalesce(payload_received_at, received_at)',
            'sent_at',
            'original_timestamp',
            'received_at'
        ) }} as occurred_at,
        received_at,
        sent_at,
        original_timestamp,
        {{ segment_accounts.json_value('payload', ['properties']) }} as properties,
        {{ segment_accounts.json_value('payload', ['traits']) }} as traits,
        {{ segment_accounts.json_value('payload', ['context']) }} as context,
        payload
    from parsed
    -- the receiver quarantines unknown types; anything else that slipped through stays in raw_events only
    where message_type in ('page', 'screen', 'track', 'identify', 'group', 'alias')

)

select * from final

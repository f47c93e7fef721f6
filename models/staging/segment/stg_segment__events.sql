{#-
    Rule "dedup": one event per (connection, messageId), the first received wins. Also the one place where the
    common fields of every message are typed: ids, the time rule, the type mapping.
    A table, not a view: the JSON is parsed here rather than by every model downstream, and once per event for
    its texts and once for its objects (macro json_batch), not once per field. The whole payload is not copied
    here: raw_events keeps it, and writing it again cost a third of this model's time.
    Incremental (dbt_project.yml): a run parses only the loads it has not read (_dlt_load_id), so its cost
    follows new data. A new copy of an event already here replaces it only when it was received earlier (a
    receiver with a slow clock, an archive ingested late): the same winner a full refresh picks.
-#}
{#- Materialization is set in dbt_project.yml: incremental, except on Spark without Delta (no delete). -#}
{{ config(
    incremental_strategy='delete+insert',
    unique_key='event_id',
    on_schema_change='fail',
) }}

{#-
    Rule "keys in camelCase or snake_case": the top-level keys read from every event, each in both spellings
    (macro to_snake_case), camelCase winning when an event carries both; plus the nested texts later models
    filter on (context.groupId, the two email traits, the Engage computation class), so that they never parse
    every event's JSON again on each run: `field[key]` is the expression for the key's text. `objects` are the
    JSON values kept whole.
-#}
{%- set keys = [
    'type', 'groupId', 'event', 'name', 'category',
    'timestamp', 'originalTimestamp', 'sentAt', 'receivedAt'
] -%}
{%- set objects = [['properties'], ['traits'], ['context']] -%}
{#- Ids are read as JSON values: their type decides whether they are ids at all (macro segment_identifier). -#}
{%- set identifier = {} -%}
{%- for key in ['userId', 'anonymousId', 'previousId'] -%}
    {%- set snake_case_key = segment_accounts.to_snake_case(key) | trim -%}
    {%- do objects.extend([[key], [snake_case_key]]) -%}
    {%- do identifier.update({key: segment_accounts.segment_identifier(
        segment_accounts.json_batch_item('payload_objects', 'payload', objects, [key], as_text=false),
        segment_accounts.json_batch_item('payload_objects', 'payload', objects, [snake_case_key], as_text=false),
        segment_accounts.json_text('payload', [key]),
        segment_accounts.json_text('payload', [snake_case_key]),
    )}) -%}
{%- endfor -%}
{%- set paths = [
    ['context', 'groupId'], ['traits', 'email'], ['context', 'traits', 'email'],
    ['context', 'personas', 'computation_class']
] -%}
{%- for key in keys -%}
    {%- do paths.append([key]) -%}
    {%- set snake_case_key = segment_accounts.to_snake_case(key) | trim -%}
    {%- if snake_case_key != key -%}{%- do paths.append([snake_case_key]) -%}{%- endif -%}
{%- endfor -%}
{%- set field = {} -%}
{%- for key in keys -%}
    {%- set snake_case_key = segment_accounts.to_snake_case(key) | trim -%}
    {%- set camel_case_text = segment_accounts.json_batch_item('payload_texts', 'payload', paths, [key]) -%}
    {%- if snake_case_key == key -%}
        {%- do field.update({key: camel_case_text}) -%}
    {%- else -%}
        {%- do field.update({key: 'coalesce(' ~ camel_case_text ~ ', '
            ~ segment_accounts.json_batch_item('payload_texts', 'payload', paths, [snake_case_key]) ~ ')'}) -%}
    {%- endif -%}
{%- endfor -%}

with

raw_events as (

    select * from {{ source('segment', 'raw_events') }}
    {% if is_incremental() -%}
        -- the loads no run has read: not "after the greatest load id", because loaders running side by side
        -- (one per spool) can commit an older load id after a newer one. A load all of whose rows lost to
        -- copies already here leaves no id behind and is read again, to lose again: cheap, and never wrong.
        where _dlt_load_id not in (
            select distinct processed._dlt_load_id from {{ this }} as processed
            where processed._dlt_load_id is not null
        )
    {%- endif %}

),

copied_messages as (

    -- the (connection, messageId) keys received more than once: a small share of the events
    select
        connection_id,
        message_id
    from raw_events
    group by connection_id, message_id
    having count(*) > 1

),

first_copies as (

    -- at-least-once delivery and loader retries both produce copies. The order is total and uses only what
    -- the spool determines (not dlt's random row id), so a raw layer rebuilt from the spool picks the same copy.
    -- Only copied keys are sorted (a key that is null is treated as copied): sorting every event with its
    -- payload was the slowest step of the build.
    select
        raw_events.connection_id,
        raw_events.message_id,
        raw_events.received_at,
        raw_events._dlt_load_id,
        raw_events.payload,
        row_number() over (
            partition by raw_events.connection_id, raw_events.message_id
            order by raw_events.received_at, raw_events._dlt_load_id, raw_events.payload
        ) as copy_number
    from raw_events
    where
        raw_events.connection_id is null
        or raw_events.message_id is null
        or exists (
            select 1 from copied_messages
            where
                copied_messages.connection_id = raw_events.connection_id
                and copied_messages.message_id = raw_events.message_id
        )

),

deduplicated as (

    select
        raw_events.connection_id,
        raw_events.message_id,
        raw_events.received_at,
        raw_events._dlt_load_id,
        raw_events.payload
    from raw_events
    where
        raw_events.connection_id is not null
        and raw_events.message_id is not null
        and not exists (
            select 1 from copied_messages
            where
                copied_messages.connection_id = raw_events.connection_id
                and copied_messages.message_id = raw_events.message_id
        )

    union all

    select
        connection_id,
        message_id,
        received_at,
        _dlt_load_id,
        payload
    from first_copies
    where copy_number = 1

),

first_received as (

    select * from deduplicated
    {% if is_incremental() -%}
        -- a copy of an event already here replaces it only if it comes first in first_copies' order
        {%- set copy_received_at = segment_accounts.to_utc_timestamp('deduplicated.received_at') %}
        where not exists (
            select 1 from {{ this }} as processed
            where
                processed.connection_id = deduplicated.connection_id
                and processed.message_id = deduplicated.message_id
                and (
                    processed.received_at < {{ copy_received_at }}
                    or (
                        processed.received_at = {{ copy_received_at }}
                        and processed._dlt_load_id < deduplicated._dlt_load_id
                    )
                )
        )
    {%- endif %}

),

parsed_payloads as {{ segment_accounts.parsed_json_cte() }} (

    -- each payload parsed once: the document (Postgres: jsonb) and, on DuckDB, every text read below at once
    select
        connection_id,
        message_id,
        received_at,
        _dlt_load_id,
        {{ segment_accounts.parse_json('payload') }} as payload,
        {{ segment_accounts.json_batch('payload', paths) }} as payload_texts,
        {{ segment_accounts.json_batch('payload', objects, as_text=false) }} as payload_objects
    from first_received

),

parsed as (

    select
        connection_id,
        message_id,
        {{ segment_accounts.to_utc_timestamp('received_at') }} as received_at,
        _dlt_load_id,
        payload,
        lower({{ field['type'] }}) as message_type,
        {{ identifier['userId'] }} as user_id,
        {{ identifier['anonymousId'] }} as anonymous_id,
        {{ identifier['previousId'] }} as previous_id,
        {{ field['groupId'] }} as group_id,
        {{ field['event'] }} as event_text,
        {{ field['name'] }} as name_text,
        {{ field['category'] }} as category_text,
        {{ segment_accounts.json_batch_item('payload_texts', 'payload', paths, ['context', 'groupId']) }}
            as context_group_id,
        {{ segment_accounts.json_batch_item('payload_texts', 'payload', paths, ['traits', 'email']) }}
            as traits_email,
        {{ segment_accounts.json_batch_item('payload_texts', 'payload', paths, ['context', 'traits', 'email']) }}
            as context_traits_email,
        {{ segment_accounts.json_batch_item(
            'payload_texts', 'payload', paths, ['context', 'personas', 'computation_class']
        ) }} as context_personas_computation_class,
        {{ segment_accounts.iso8601_to_utc(field['timestamp']) }} as event_timestamp,
        {{ segment_accounts.iso8601_to_utc(field['originalTimestamp']) }} as original_timestamp,
        {{ segment_accounts.iso8601_to_utc(field['sentAt']) }} as sent_at,
        {{ segment_accounts.iso8601_to_utc(field['receivedAt']) }} as payload_received_at,
        {{ segment_accounts.json_batch_item(
            'payload_objects', 'payload', objects, ['properties'], as_text=false
        ) }} as properties,
        {{ segment_accounts.json_batch_item(
            'payload_objects', 'payload', objects, ['traits'], as_text=false
        ) }} as traits,
        {{ segment_accounts.json_batch_item(
            'payload_objects', 'payload', objects, ['context'], as_text=false
        ) }} as context
    from parsed_payloads

),

final as (

    select
        {{ dbt.hash(dbt.concat(['connection_id', "'|'", 'message_id'])) }} as event_id,
        connection_id,
        message_id,
        message_type,
        {{ segment_accounts.segment_event_type('message_type') }} as event_type,
        case message_type
            when 'track' then event_text
            when 'page' then name_text
            when 'screen' then name_text
        end as event_name,
        user_id,
        anonymous_id,
        case when message_type = 'alias' then previous_id end as previous_id,
        case when message_type = 'group' then group_id end as group_id,
        case when message_type in ('page', 'screen') then category_text end as category,
        context_group_id,
        traits_email,
        context_traits_email,
        context_personas_computation_class,
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
        properties,
        traits,
        context,
        _dlt_load_id
    from parsed
    -- the receiver quarantines unknown types; anything else that slipped through stays in raw_events only
    where message_type in ('page', 'screen', 'track', 'identify', 'group', 'alias')

)

select * from final

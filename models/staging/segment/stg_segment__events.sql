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
    Rule "keys in camelCase or snake_case": each top-level key is read in both spellings, camelCase winning when
    an event carries both. `texts` are every JSON text read below, `objects` the JSON values kept whole: each
    list is read in one pass over the document (macro json_batch), and `text` and `object` below name its items.
-#}
{%- set texts = [
    ['type'],
    ['groupId'], ['group_id'], ['event'], ['name'], ['category'], ['timestamp'], ['originalTimestamp'],
    ['original_timestamp'], ['sentAt'], ['sent_at'], ['receivedAt'], ['received_at'],
    ['context', 'groupId'], ['traits', 'email'], ['context', 'traits', 'email'],
    ['context', 'personas', 'computation_class'],
] -%}
{#- Ids are read as JSON values: their type decides whether they are ids at all (macro segment_identifier). -#}
{%- set objects = [
    ['properties'], ['traits'], ['context'],
    ['userId'], ['user_id'], ['anonymousId'], ['anonymous_id'], ['previousId'], ['previous_id'],
] -%}
{#- `text['context.groupId']` is the expression for the text at that path, `object['traits']` for the value. -#}
{%- set text = {} -%}
{%- for path in texts -%}
    {%- do text.update({
        path | join('.'): segment_accounts.json_batch_item('payload_texts', 'payload', texts, path)
    }) -%}
{%- endfor -%}
{%- set object = {} -%}
{%- for path in objects -%}
    {%- do object.update({
        path | join('.'): segment_accounts.json_batch_item('payload_objects', 'payload', objects, path, as_text=false)
    }) -%}
{%- endfor %}

with

dlt_loads as (

    select * from {{ source('segment', '_dlt_loads') }}

),

loads_to_read as (

    -- only loads dlt has recorded complete: a load still running (another loader's, while this builds) may
    -- have committed some of its files and not the rest, and a load id read here is never read again
    select distinct dlt_loads.load_id
    from dlt_loads
    where dlt_loads.status = 0
    {% if is_incremental_run() -%}
        -- the loads no run has read: not "after the greatest load id", because loaders running side by side
        -- (one per spool) can commit an older load id after a newer one. A load all of whose rows lost to
        -- copies already here leaves no id behind and is read again, to lose again: cheap, and never wrong.
        and dlt_loads.load_id not in (
            select distinct processed._dlt_load_id from {{ this }} as processed
            where processed._dlt_load_id is not null
        )
    {%- endif %}

),

raw_events as {% if is_incremental_run() %}{{ segment_accounts.inlined_cte() }}{% endif %} (

    -- a join on the few loads to read, not a filter: the warehouse then skips the raw rows of the loads read
    -- before (DuckDB: by their row groups' load ids), and ends at once when there is none. An incremental run
    -- reads it in three steps below without copying it first: each keeps few rows
    select loaded.*
    from {{ source('segment', 'raw_events') }} as loaded
    inner join loads_to_read
        on loaded._dlt_load_id = loads_to_read.load_id

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
    {% if is_incremental_run() -%}
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
        {{ segment_accounts.json_batch('payload', texts) }} as payload_texts,
        {{ segment_accounts.json_batch('payload', objects, as_text=false) }} as payload_objects
    from first_received

),

parsed as (

    select
        connection_id,
        message_id,
        {{ segment_accounts.to_utc_timestamp('received_at') }} as received_at,
        _dlt_load_id,
        lower({{ text['type'] }}) as message_type,
        {{ segment_accounts.segment_identifier(
            'payload', 'userId', 'user_id', object['userId'], object['user_id'],
        ) }} as user_id,
        {{ segment_accounts.segment_identifier(
            'payload', 'anonymousId', 'anonymous_id', object['anonymousId'], object['anonymous_id'],
        ) }} as anonymous_id,
        {{ segment_accounts.segment_identifier(
            'payload', 'previousId', 'previous_id', object['previousId'], object['previous_id'],
        ) }} as previous_id,
        coalesce({{ text['groupId'] }}, {{ text['group_id'] }}) as group_id,
        {{ text['event'] }} as event_text,
        {{ text['name'] }} as name_text,
        {{ text['category'] }} as category_text,
        {{ text['context.groupId'] }} as context_group_id,
        {{ text['traits.email'] }} as traits_email,
        {{ text['context.traits.email'] }} as context_traits_email,
        {{ text['context.personas.computation_class'] }} as context_personas_computation_class,
        {{ segment_accounts.iso8601_to_utc(text['timestamp']) }} as event_timestamp,
        {{ segment_accounts.iso8601_to_utc(
            'coalesce(' ~ text['originalTimestamp'] ~ ', ' ~ text['original_timestamp'] ~ ')'
        ) }} as original_timestamp,
        {{ segment_accounts.iso8601_to_utc(
            'coalesce(' ~ text['sentAt'] ~ ', ' ~ text['sent_at'] ~ ')'
        ) }} as sent_at,
        {{ segment_accounts.iso8601_to_utc(
            'coalesce(' ~ text['receivedAt'] ~ ', ' ~ text['received_at'] ~ ')'
        ) }} as payload_received_at,
        {{ object['properties'] }} as properties,
        {{ object['traits'] }} as traits,
        {{ object['context'] }} as context
    from parsed_payloads

),

message_types as (

    -- rule "type mapping", and the six Segment message types: a seed, not a list written here and elsewhere
    select * from {{ ref('segment_message_types') }}

),

final as (

    select
        {{ dbt.hash(dbt.concat(['parsed.connection_id', "'|'", 'parsed.message_id'])) }} as event_id,
        parsed.connection_id,
        parsed.message_id,
        parsed.message_type,
        message_types.event_type,
        case parsed.message_type
            when 'track' then parsed.event_text
            when 'page' then parsed.name_text
            when 'screen' then parsed.name_text
        end as event_name,
        parsed.user_id,
        parsed.anonymous_id,
        case when parsed.message_type = 'alias' then parsed.previous_id end as previous_id,
        case when parsed.message_type = 'group' then parsed.group_id end as group_id,
        case when parsed.message_type in ('page', 'screen') then parsed.category_text end as category,
        parsed.context_group_id,
        parsed.traits_email,
        parsed.context_traits_email,
        parsed.context_personas_computation_class,
        {{ segment_accounts.segment_occurred_at(
            'parsed.event_timestamp',
            'coalesce(parsed.payload_received_at, parsed.received_at)',
            'parsed.sent_at',
            'parsed.original_timestamp',
            'parsed.received_at'
        ) }} as occurred_at,
        parsed.received_at,
        parsed.sent_at,
        parsed.original_timestamp,
        parsed.properties,
        parsed.traits,
        parsed.context,
        parsed._dlt_load_id
    from parsed
    -- the receiver quarantines unknown types; anything else that slipped through stays in raw_events only
    inner join message_types
        on parsed.message_type = message_types.message_type

)

select * from final

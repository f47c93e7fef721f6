{#-
    The calls the identity rules need, instead of every event: for each key below, its first and its last call
    (by occurred_at, then received_at, then messageId). The keys are what the rules ask about:
      - a user id, from any event's userId (rule "alias merge chains": was it ever seen as a user id);
      - an anonymous id with the user id of the call, or with none (rule "anonymous ids": the latest call with
        both; fct_identity_merges: the first);
      - an alias's previousId with its userId (rule "alias merge chains": the edge, whose latest call names the
        canonical user id; fct_identity_merges: the first);
      - a trait of an identify call, with the id the call is identified by (its user id, else its anonymous id):
        int_contact_traits_merged takes each trait's latest value across a contact's ids;
      - an email (rule "emails", below), with that id and the call's connection: int_contact_emails_collected
        takes a contact's latest, on any connection or on those whose settings let an email name an account.
    A row is one of those calls as int_identifiers_cleaned has it, carrying only its key's ids (a user id's row
    has no anonymous id), and a trait's name and value or an email. The models read these rows as they read every event
    before, and get the same answers: each thing they take (seen at all, first, latest) is taken per key, and
    each key's first and latest call are here. A key has two rows here whatever its number of events.
    Incremental (dbt_project.yml): a run reads the calls of the loads it has not read (the loads read are kept
    in the build state, in this model's own transaction: macros/build_state.sql) and, for each key they carry,
    keeps the earlier first and the later last of the new calls and of its two rows. A key whose stored first
    or last call was replaced in staging by a copy received earlier is computed again from every event: the copy
    sorts earlier, so a call between the two could now be the last. Equal to a full refresh
    (tests/test_incremental_equality.py).
-#}
{#- Materialization is set in dbt_project.yml: incremental, except on Spark without Delta (no delete). -#}
{#- Read outside the incremental branch below, so that dbt sees them when it parses the project. -#}
{%- set read_loads = source('build_state', 'int_identifier_calls_summarized__loads') -%}
{%- set staged_events = ref('stg_segment__events') -%}
{#- A call's columns as this table keeps them (besides its key and bound). -#}
{%- set call_columns = [
    'identifier_role', 'identifier', 'event_id', 'connection_id', 'message_id', 'message_type', 'occurred_at',
    'received_at', 'user_id', 'anonymous_id', 'previous_id', 'trait_name', 'trait_value', 'email', '_dlt_load_id',
] -%}
{{ config(
    incremental_strategy='delete+insert',
    unique_key='identifier_call_id',
    on_schema_change='fail',
    post_hook=[
        "{% if model.config.materialized == 'incremental' %}delete from {{ this }} where event_id is null{% endif %}",
        "{{ segment_accounts.drop_build_state(source('build_state', 'int_identifier_calls_summarized__loads')) }}",
        "{{ segment_accounts.create_build_state(
            source('build_state', 'int_identifier_calls_summarized__loads'),
            'select distinct _dlt_load_id from ' ~ ref('stg_segment__events') ~ ' where _dlt_load_id is not null',
        ) }}",
    ],
) }}

with

identifiers as {{ segment_accounts.inlined_cte() }} (

    -- a view over every event: each reader below keeps a few of its rows (the new loads' events, or those of a
    -- key computed again), so each reads it rather than copying it whole first
    select * from {{ ref('int_identifiers_cleaned') }}

),

{% if is_incremental_run() %}
{{- segment_accounts.require_built_columns(['identifier_key', 'event_id', 'trait_value', 'email', '_dlt_load_id']) }}

built_calls as {{ segment_accounts.inlined_cte() }} (

    -- read where used: each use takes a few columns, or the rows of a few keys
    select * from {{ this }}

),

{#- from staging's column, not the view: the view would clean every event's ids first -#}
{%- set new_loads_sql = segment_accounts.loads_not_read(staged_events, read_loads) %}
{#- the new loads' ids, read once for the three filters below (each reads one relation: the column is bare) -#}
{%- set in_new_loads = segment_accounts.in_loads_not_read('_dlt_load_id', new_loads_sql, 'new_loads') %}

new_loads as (

    {{ new_loads_sql }}

),

new_events as (

    select identifiers.*
    from identifiers
    where {{ in_new_loads }}

),

replaced_keys as (

    -- keys whose stored first or last call was replaced by a copy that came with a new load
    select distinct
        built_calls.identifier_key,
        built_calls.identifier_role,
        built_calls.identifier
    from built_calls
    inner join new_events
        on built_calls.event_id = new_events.event_id

),

recomputed_events as (

    -- the other events of the replaced keys' ids (joins: on an empty side each ends without reading the events)
    select events_of_ids.*
    from (
        select identifiers.*
        from identifiers
        inner join replaced_keys
            on
                identifiers.user_id = replaced_keys.identifier
                and replaced_keys.identifier_role = 'user_id'

        union

        select identifiers.*
        from identifiers
        inner join replaced_keys
            on
                identifiers.anonymous_id = replaced_keys.identifier
                and replaced_keys.identifier_role = 'anonymous_id'

        union

        select identifiers.*
        from identifiers
        inner join replaced_keys
            on
                identifiers.previous_id = replaced_keys.identifier
                and replaced_keys.identifier_role = 'previous_id'

        union

        select identifiers.*
        from identifiers
        inner join replaced_keys
            on
                coalesce(identifiers.user_id, identifiers.anonymous_id) = replaced_keys.identifier
                and replaced_keys.identifier_role in ('trait', 'email')
    ) as events_of_ids
    where not ({{ in_new_loads }})

),

{% endif %}

scoped_payloads as (

    -- the traits and emails of the scoped events, from staging: the new loads' and the recomputed events'
    {% if is_incremental_run() -%}
        select
            events.event_id,
            events.message_type,
            events.traits,
            events.traits_email,
            events.context_traits_email
        from {{ staged_events }} as events
        where {{ in_new_loads }}

        union all

        select
            events.event_id,
            events.message_type,
            events.traits,
            events.traits_email,
            events.context_traits_email
        from {{ staged_events }} as events
        where events.event_id in (select recomputed_events.event_id from recomputed_events)
    {%- else -%}
        select
            events.event_id,
            events.message_type,
            events.traits,
            events.traits_email,
            events.context_traits_email
        from {{ staged_events }} as events
    {%- endif %}

),

scoped_traits as (

    -- an identify's traits (jsonb_each fails on anything but an object: others are left out before it runs)
    select
        event_id,
        traits
    from scoped_payloads
    where
        message_type = 'identify'
        and {{ segment_accounts.json_is_object('traits') }}

),

scoped_emails as (

    -- Rule "emails": `email` from an identify's traits, or from context.traits of any event (analytics.js
    -- copies the user's traits there); lowercased and trimmed; values that do not look like an address are none
    select
        event_id,
        email
    from (
        select
            event_id,
            lower(trim(coalesce(
                case when message_type = 'identify' then traits_email end,
                context_traits_email
            ))) as email
        from scoped_payloads
    ) as emails
    where {{ segment_accounts.regexp_like('email', "'^[^@ ]+@[^@ ]+[.][^@ ]+$'") }}

),

scoped_events as (

    {% if is_incremental_run() -%}
        select
            new_events.*,
            true as is_new
        from new_events

        union all

        select
            recomputed_events.*,
            false as is_new
        from recomputed_events
    {%- else -%}
        select
            identifiers.*,
            true as is_new
        from identifiers
    {%- endif %}

),

calls as (

    -- one row per event and key it carries, with that key's ids only
    select
        'user_id' as identifier_role,
        user_id as identifier,
        event_id,
        connection_id,
        message_id,
        message_type,
        occurred_at,
        received_at,
        user_id,
        null as anonymous_id,
        null as previous_id,
        null as trait_name,
        {{ segment_accounts.json_null() }} as trait_value,
        null as email,
        null as key_detail,
        _dlt_load_id,
        is_new
    from scoped_events
    where user_id is not null

    union all

    select
        'anonymous_id' as identifier_role,
        anonymous_id as identifier,
        event_id,
        connection_id,
        message_id,
        message_type,
        occurred_at,
        received_at,
        user_id,
        anonymous_id,
        null as previous_id,
        null as trait_name,
        {{ segment_accounts.json_null() }} as trait_value,
        null as email,
        null as key_detail,
        _dlt_load_id,
        is_new
    from scoped_events
    where anonymous_id is not null

    union all

    select
        'previous_id' as identifier_role,
        previous_id as identifier,
        event_id,
        connection_id,
        message_id,
        message_type,
        occurred_at,
        received_at,
        user_id,
        null as anonymous_id,
        previous_id,
        null as trait_name,
        {{ segment_accounts.json_null() }} as trait_value,
        null as email,
        null as key_detail,
        _dlt_load_id,
        is_new
    from scoped_events
    where
        message_type = 'alias'
        and previous_id is not null
        and user_id is not null

    union all

    select
        'trait' as identifier_role,
        coalesce(scoped_events.user_id, scoped_events.anonymous_id) as identifier,
        scoped_events.event_id,
        scoped_events.connection_id,
        scoped_events.message_id,
        scoped_events.message_type,
        scoped_events.occurred_at,
        scoped_events.received_at,
        scoped_events.user_id,
        case when scoped_events.user_id is null then scoped_events.anonymous_id end as anonymous_id,
        null as previous_id,
        trait.key as trait_name,
        trait.value as trait_value,
        null as email,
        trait.key as key_detail,
        scoped_events._dlt_load_id,
        scoped_events.is_new
    from scoped_events
    inner join scoped_traits
        on scoped_events.event_id = scoped_traits.event_id
    cross join {{ segment_accounts.json_each('scoped_traits.traits') }} as trait
    where coalesce(scoped_events.user_id, scoped_events.anonymous_id) is not null

    union all

    select
        'email' as identifier_role,
        coalesce(scoped_events.user_id, scoped_events.anonymous_id) as identifier,
        scoped_events.event_id,
        scoped_events.connection_id,
        scoped_events.message_id,
        scoped_events.message_type,
        scoped_events.occurred_at,
        scoped_events.received_at,
        scoped_events.user_id,
        case when scoped_events.user_id is null then scoped_events.anonymous_id end as anonymous_id,
        null as previous_id,
        null as trait_name,
        {{ segment_accounts.json_null() }} as trait_value,
        scoped_emails.email,
        -- the connections' settings decide which emails may name an account: one key per connection
        scoped_events.connection_id as key_detail,
        scoped_events._dlt_load_id,
        scoped_events.is_new
    from scoped_events
    inner join scoped_emails
        on scoped_events.event_id = scoped_emails.event_id
    where coalesce(scoped_events.user_id, scoped_events.anonymous_id) is not null

),

keyed_calls as (

    -- the identifier's length delimits it, so no two keys write the same text whatever their ids contain
    select
        {{ dbt.hash(dbt.concat([
            'identifier_role', "'|'", dbt.cast(dbt.length('identifier'), dbt.type_string()), "'|'", 'identifier', "'|'",
            "coalesce(user_id, '')", "'|'", "coalesce(key_detail, '')",
        ])) }} as identifier_key,
        calls.identifier_role,
        calls.identifier,
        calls.event_id,
        calls.connection_id,
        calls.message_id,
        calls.message_type,
        calls.occurred_at,
        calls.received_at,
        calls.user_id,
        calls.anonymous_id,
        calls.previous_id,
        calls.trait_name,
        calls.trait_value,
        calls.email,
        -- text on every target: on Postgres staging's is varchar, and an incremental run's schema check would meet
        -- varchar against the text its union with the stored rows gives
        {{ dbt.cast('calls._dlt_load_id', dbt.type_string()) }} as _dlt_load_id,
        calls.is_new
    from calls

),

{% if is_incremental_run() %}

kept_keys as (

    -- the new calls' keys whose stored rows still hold their first and last calls
    select distinct keyed_calls.identifier_key
    from keyed_calls
    where
        keyed_calls.is_new
        and not exists (
            select 1 from replaced_keys
            where replaced_keys.identifier_key = keyed_calls.identifier_key
        )

),

{% endif %}

candidate_calls as (

    {% if is_incremental_run() -%}
        -- a kept key's new calls and stored rows; a replaced key's calls from every one of its events (the new
        -- loads' and recomputed_events')
        select
            keyed_calls.identifier_key,
            {%- for column in call_columns %}
            keyed_calls.{{ column }}{{ ',' if not loop.last }}
            {%- endfor %}
        from keyed_calls
        where
            (
                keyed_calls.is_new
                and exists (
                    select 1 from kept_keys
                    where kept_keys.identifier_key = keyed_calls.identifier_key
                )
            )
            or exists (
                select 1 from replaced_keys
                where replaced_keys.identifier_key = keyed_calls.identifier_key
            )

        union all

        select
            built_calls.identifier_key,
            {%- for column in call_columns %}
            built_calls.{{ column }}{{ ',' if not loop.last }}
            {%- endfor %}
        from built_calls
        inner join kept_keys
            on built_calls.identifier_key = kept_keys.identifier_key
    {%- else -%}
        select * from keyed_calls
    {%- endif %}

),

bounding_calls as (

    {#- each key's earliest and latest call (occurred_at, then received_at, then messageId; the event breaks ties) #}
    {{ segment_accounts.first_and_last_rows(
        'candidate_calls', 'identifier_key', ['occurred_at', 'received_at', 'message_id', 'event_id'], call_columns,
    ) }}

),

{% if is_incremental_run() %}

vanished_calls as (

    -- a recomputed key with no call left (the copy carries other ids): a row with no event replaces each of its
    -- two, and the first post-hook deletes it
    select
        bounds.bound,
        replaced_keys.identifier_key
    from replaced_keys
    cross join (select 'first' as bound union all select 'last' as bound) as bounds
    where not exists (
        select 1 from candidate_calls
        where candidate_calls.identifier_key = replaced_keys.identifier_key
    )

),

{% endif %}

final as (

    select
        bounding_calls.*,
        {{ dbt.hash(dbt.concat(['bounding_calls.bound', "'|'", 'bounding_calls.identifier_key'])) }}
            as identifier_call_id
    from bounding_calls
    {% if is_incremental_run() -%}
        union all
        select
            vanished_calls.bound,
            vanished_calls.identifier_key,
            {%- for column in call_columns %}
            null as {{ column }},
            {%- endfor %}
            {{ dbt.hash(dbt.concat(['vanished_calls.bound', "'|'", 'vanished_calls.identifier_key'])) }}
                as identifier_call_id
        from vanished_calls
    {%- endif %}

)

select * from final

{#-
    Rule "event attribution": an event's account is its own groupId when it names one (context.groupId, or the
    groupId of a group call), else its contact's account. Staging reads both ids in its one pass.
    Incremental (dbt_project.yml): a run rewrites the events of the loads it has not read, and the events whose
    identifier now resolves to another contact or whose contact now has another account than when this table
    was last built (a late alias, a new group call or trait, a changed email, a changed connection setting:
    whatever int_contact_accounts_resolved decides). The mapping of the last build is kept by this model's
    post-hooks, in its own transaction (macros/build_state.sql), and read back as the source build_state.
    Equal to a full refresh (tests/test_incremental_equality.py).
-#}
{#-
    Materialization and on_schema_change are set in dbt_project.yml: incremental, except on Spark without Delta
    (no delete); a contract there requires on_schema_change fail wherever it is incremental.
-#}
{#- Read outside the incremental branch below, so that dbt sees them when it parses the project. -#}
{%- set build_state = source('build_state', 'fct_events__mapping') -%}
{%- set contact_identifiers = ref('int_contact_identifiers_resolved') -%}
{#- recorded_delete_insert and the hooks keep what a build rewrote, for publishing (macros/published_changes.sql) -#}
{{ config(
    incremental_strategy='recorded_delete_insert',
    unique_key='event_id',
    pre_hook="{{ segment_accounts.forget_rewritten_rows() }}",
    post_hook=[
        "{{ segment_accounts.record_build() }}",
        "{{ segment_accounts.drop_build_state(source('build_state', 'fct_events__mapping')) }}",
        "{{ segment_accounts.create_build_state(
            source('build_state', 'fct_events__mapping'),
            'select identifiers.identifier, identifiers.identifier_type, identifiers.contact_id,'
            ~ ' accounts.account_id from ' ~ ref('int_contact_identifiers_resolved') ~ ' as identifiers'
            ~ ' left join ' ~ ref('int_contact_accounts_resolved') ~ ' as accounts'
            ~ ' on identifiers.contact_id = accounts.contact_id',
        ) }}",
    ],
) }}

with

events as {{ segment_accounts.inlined_cte() }} (

    select * from {{ ref('stg_segment__events') }}

),

connections as (

    select * from {{ ref('stg_segment__connections') }}

),

events_identified as {{ segment_accounts.inlined_cte() }} (

    select * from {{ ref('int_events_identified') }}

),

contact_accounts as (

    select * from {{ ref('int_contact_accounts_resolved') }}

),

{% if is_incremental_run() %}
{{- segment_accounts.require_built_columns(['_dlt_load_id']) }}
{%- set new_loads_sql = segment_accounts.loads_not_read(ref('stg_segment__events'), this) %}
{#- the new loads' ids, read once for the four filters below (each reads one relation with a load id: bare) -#}
{%- set in_new_loads = segment_accounts.in_loads_not_read('_dlt_load_id', new_loads_sql, 'new_loads') %}

contact_identifiers as (

    select * from {{ contact_identifiers }}

),

built_events as {{ segment_accounts.inlined_cte() }} (

    select * from {{ this }}

),

built_identifier_accounts as (

    select * from {{ build_state }}

),

identifier_accounts as (

    select
        contact_identifiers.identifier,
        contact_identifiers.identifier_type,
        contact_identifiers.contact_id,
        contact_accounts.account_id
    from contact_identifiers
    left join contact_accounts
        on contact_identifiers.contact_id = contact_accounts.contact_id

),

changed_identifiers as (

    -- identifiers whose contact, or whose contact's account, is not the one this table was built with
    select
        identifier_accounts.identifier,
        identifier_accounts.identifier_type
    from identifier_accounts
    left join built_identifier_accounts
        on
            identifier_accounts.identifier = built_identifier_accounts.identifier
            and identifier_accounts.identifier_type = built_identifier_accounts.identifier_type
    where
        built_identifier_accounts.identifier is null
        or built_identifier_accounts.contact_id != identifier_accounts.contact_id
        or built_identifier_accounts.account_id is distinct from identifier_accounts.account_id

),

new_loads as (

    -- the loads this table has not read; staging's rows are read by load, not probed by event
    {{ new_loads_sql }}

),

moved_event_ids as (

    select built_events.event_id
    from built_events
    inner join changed_identifiers
        on
            coalesce(built_events.user_id, built_events.anonymous_id) = changed_identifiers.identifier
            and changed_identifiers.identifier_type
            = {{ segment_accounts.call_identifier_type('built_events.user_id') }}

),

{% endif %}

scoped as (

    {% if is_incremental_run() -%}
        -- the new loads' events by their load ids as literals: with none, the filter is false and the events'
        -- JSON is not read
        select events.*
        from events
        where {{ in_new_loads }}

        union all

        select events.*
        from events
        inner join moved_event_ids
            on events.event_id = moved_event_ids.event_id
        where not ({{ in_new_loads }})
    {%- else -%}
        select * from events
    {%- endif %}

),

scoped_events_identified as (

    {% if is_incremental_run() -%}
        -- the scoped events' contacts and ids: a new load's events by their load, a moved event by its id.
        -- Joined whole, the table would be read (and hashed) in full to keep 1% of it
        select events_identified.*
        from events_identified
        where {{ in_new_loads }}

        union all

        select events_identified.*
        from events_identified
        inner join moved_event_ids
            on events_identified.event_id = moved_event_ids.event_id
        where not ({{ in_new_loads }})
    {%- else -%}
        select * from events_identified
    {%- endif %}

),

final as (

    select
        scoped.event_id,
        -- text on every target, as the contract says: on Postgres these are varchar, and an incremental run's
        -- schema check would meet varchar against the contract's text
        {{ dbt.cast('scoped.message_id', dbt.type_string()) }} as message_id,
        {{ dbt.cast('connections.connection_name', dbt.type_string()) }} as connection_name,
        scoped.message_type,
        {{ dbt.cast('scoped.event_type', dbt.type_string()) }} as event_type,
        scoped.event_name,
        scoped_events_identified.contact_id,
        coalesce(
            {{ segment_accounts.clean_identifier('scoped.context_group_id') }},
            {{ segment_accounts.clean_identifier('scoped.group_id') }},
            contact_accounts.account_id
        ) as account_id,
        scoped_events_identified.user_id,
        scoped_events_identified.anonymous_id,
        scoped_events_identified.previous_id,
        scoped.occurred_at,
        scoped.received_at,
        scoped.properties,
        scoped.traits,
        scoped.context,
        {{ dbt.cast('scoped._dlt_load_id', dbt.type_string()) }} as _dlt_load_id
    from scoped
    left join connections
        on scoped.connection_id = connections.connection_id
    left join scoped_events_identified
        on scoped.event_id = scoped_events_identified.event_id
    left join contact_accounts
        on scoped_events_identified.contact_id = contact_accounts.contact_id

)

select * from final

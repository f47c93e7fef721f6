{#-
    Each event's contact: by its user id when it has a usable one, else by its anonymous id. One lookup per
    event: every cleaned user id is an identifier of type user_id (int_user_ids_merged lists them all), so an
    event with a user id always finds its contact by it and never needs its anonymous id.
    Incremental (dbt_project.yml): a run rewrites the events of the loads it has not read, and the events whose
    identifier now resolves to another contact than when this table was last built (a late alias merged two
    contacts, or changed their canonical user id). The mapping of the last build is kept by this model's
    post-hooks, in its own transaction (macros/build_state.sql), and read back as the source build_state.
    Every other event keeps its row: same input, same contact. Equal to a full refresh
    (tests/test_incremental_equality.py).
-#}
{#- Materialization is set in dbt_project.yml: incremental, except on Spark without Delta (no delete). -#}
{#- Read outside the incremental branch below, so that dbt sees them when it parses the project. -#}
{%- set build_state = source('build_state', 'int_events_identified__mapping') -%}
{%- set staged_events = ref('stg_segment__events') -%}
{{ config(
    incremental_strategy='delete+insert',
    unique_key='event_id',
    on_schema_change='fail',
    post_hook=[
        "{{ segment_accounts.drop_build_state(source('build_state', 'int_events_identified__mapping')) }}",
        "{{ segment_accounts.create_build_state(
            source('build_state', 'int_events_identified__mapping'),
            'select identifier, identifier_type, contact_id from ' ~ ref('int_contact_identifiers_resolved'),
        ) }}",
    ],
) }}

with

identifiers as (

    select * from {{ ref('int_identifiers_cleaned') }}

),

contact_identifiers as (

    select * from {{ ref('int_contact_identifiers_resolved') }}

),

{% if is_incremental_run() %}
{{- segment_accounts.require_built_columns(['_dlt_load_id', 'previous_id']) }}

built_events as {{ segment_accounts.inlined_cte() }} (

    select * from {{ this }}

),

built_contact_identifiers as (

    select * from {{ build_state }}

),

{#-
    the loads this table has not read (as staging finds them: loaders side by side commit in any order); a copy
    that replaced an event in staging came with its load, so it is read again too. From staging's column, not
    the view: the view would clean every event's ids first.
-#}
{%- set new_loads_sql = segment_accounts.loads_not_read(staged_events, this) %}

new_loads as (

    {{ new_loads_sql }}

),

{% endif %}

new_events as (

    select
        identifiers.event_id,
        identifiers.user_id,
        identifiers.anonymous_id,
        identifiers.previous_id,
        identifiers.occurred_at,
        identifiers.received_at,
        identifiers.message_id,
        identifiers._dlt_load_id
    from identifiers
    {% if is_incremental_run() -%}
        where {{ segment_accounts.in_loads_not_read('identifiers._dlt_load_id', new_loads_sql, 'new_loads') }}
    {%- endif %}

),

{% if is_incremental_run() %}

changed_identifiers as (

    -- identifiers whose contact is not the one this table was built with (or that it has not seen)
    select
        contact_identifiers.identifier,
        contact_identifiers.identifier_type
    from contact_identifiers
    left join built_contact_identifiers
        on
            contact_identifiers.identifier = built_contact_identifiers.identifier
            and contact_identifiers.identifier_type = built_contact_identifiers.identifier_type
    where
        built_contact_identifiers.contact_id is null
        or built_contact_identifiers.contact_id != contact_identifiers.contact_id

),

moved_events as (

    -- built events whose contact changed: their other columns are still right, so they come from this table
    select
        built_events.event_id,
        built_events.user_id,
        built_events.anonymous_id,
        built_events.previous_id,
        built_events.occurred_at,
        built_events.received_at,
        built_events.message_id,
        built_events._dlt_load_id
    from built_events
    inner join changed_identifiers
        on
            coalesce(built_events.user_id, built_events.anonymous_id) = changed_identifiers.identifier
            and changed_identifiers.identifier_type
            = {{ segment_accounts.call_identifier_type('built_events.user_id') }}
    where not exists (
        select 1 from new_events
        where new_events.event_id = built_events.event_id
    )

),

{% endif %}

scoped as (

    select * from new_events
    {% if is_incremental_run() -%}
        union all
        select * from moved_events
    {%- endif %}

),

final as (

    select
        scoped.event_id,
        scoped.user_id,
        scoped.anonymous_id,
        scoped.previous_id,
        scoped.occurred_at,
        scoped.received_at,
        scoped.message_id,
        contact_identifiers.contact_id,
        scoped._dlt_load_id
    from scoped
    left join contact_identifiers
        on
            coalesce(scoped.user_id, scoped.anonymous_id) = contact_identifiers.identifier
            and {{ segment_accounts.call_identifier_type('scoped.user_id') }} = contact_identifiers.identifier_type

)

select * from final

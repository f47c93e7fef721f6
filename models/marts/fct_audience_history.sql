{#-
    Engage history: one row per change of an audience membership or computed trait value, per contact and
    computation key, ordered by occurred_at (then received_at, then messageId). Equal consecutive values open no
    row. Incremental: each run deletes and re-derives only the (contact, key) pairs whose inputs changed (see
    int_engage_pairs_fingerprinted), and the post-hook drops pairs whose contact no longer exists after an alias
    merged it away. Tested against a full refresh in tests/test_incremental_equality.py.
-#}
{#-
    Materialization and on_schema_change are set in dbt_project.yml: incremental, except on Spark without Delta
    (no delete); a contract there requires on_schema_change fail wherever it is incremental.
-#}
{{ config(
    incremental_strategy='delete+insert',
    unique_key=['contact_id', 'computation_key'],
    post_hook="{{ segment_accounts.delete_vanished_pairs(this, ref('int_engage_pairs_fingerprinted')) }}",
) }}

with

computations as (

    select * from {{ ref('int_engage_computations_collected') }}

),

pairs as (

    select * from {{ ref('int_engage_pairs_fingerprinted') }}

),

{% if is_incremental_run() %}

built_pairs as (

    select distinct
        contact_id,
        computation_key,
        source_fingerprint
    from {{ this }}

),

{% endif %}

changed_pairs as (

    -- a full build derives every pair; an incremental one only those whose inputs changed since it was built
    select pairs.*
    from pairs
    {% if is_incremental_run() -%}
    left join built_pairs
        on
            pairs.contact_id = built_pairs.contact_id
            and pairs.computation_key = built_pairs.computation_key
    where
        built_pairs.source_fingerprint is null
        or built_pairs.source_fingerprint != pairs.source_fingerprint
    {%- endif %}

),

scoped as (

    select
        computations.*,
        changed_pairs.source_fingerprint,
        -- what counts as "the same value": membership for audiences, the JSON value for computed traits
        coalesce({{ dbt.cast('computations.is_member', dbt.type_string()) }}, computations.value) as state
    from computations
    inner join changed_pairs
        on
            computations.contact_id = changed_pairs.contact_id
            and computations.computation_key = changed_pairs.computation_key

),

compared as (

    select
        *,
        lag(state) over (
            partition by contact_id, computation_key
            order by occurred_at, received_at, message_id
        ) as previous_state
    from scoped

),

changes as (

    select * from compared
    where previous_state is null or previous_state != state

),

final as (

    select
        {{ dbt.hash(dbt.concat(['contact_id', "'|'", 'computation_key', "'|'", 'message_id'])) }}
            as audience_history_id,
        contact_id,
        computation_key,
        computation_class,
        computation_id,
        space_id,
        value,
        is_member,
        occurred_at as valid_from,
        lead(occurred_at) over (
            partition by contact_id, computation_key
            order by occurred_at, received_at, message_id
        ) as valid_to,
        lead(occurred_at) over (
            partition by contact_id, computation_key
            order by occurred_at, received_at, message_id
        ) is null as is_current,
        -- text on every target: on Postgres the raw column is varchar, and the incremental schema check
        -- compares this against the contract's text
        {{ dbt.cast('message_id', dbt.type_string()) }} as source_message_id,
        source_fingerprint
    from changes

)

select * from final

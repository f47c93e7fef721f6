{#-
    One row per (contact, computation key) with a fingerprint of every input its history depends on: which
    events belong to it (identity decides that, and a later alias can move events between contacts), their
    values and their times. fct_audience_history rebuilds exactly the pairs whose fingerprint changed since its
    last run, so late events, re-deliveries and identity merges all re-derive what they touch and nothing else,
    and an incremental run always equals a full refresh.
-#}

with

computations as (

    select * from {{ ref('int_engage_computations_collected') }}

),

event_fingerprints as (

    select
        contact_id,
        computation_key,
        {{ dbt.hash(dbt.concat([
            'event_id', "'|'",
            "coalesce(value, '')", "'|'",
            "coalesce(computation_class, '')", "'|'",
            "coalesce(computation_id, '')", "'|'",
            "coalesce(space_id, '')", "'|'",
            dbt.cast('occurred_at', dbt.type_string()), "'|'",
            dbt.cast('received_at', dbt.type_string()), "'|'",
            'message_id',
        ])) }} as event_fingerprint
    from computations

),

final as (

    select
        contact_id,
        computation_key,
        count(*) as event_count,
        {{ dbt.hash(dbt.listagg('event_fingerprint', "','", 'order by event_fingerprint')) }} as source_fingerprint
    from event_fingerprints
    group by contact_id, computation_key

)

select * from final

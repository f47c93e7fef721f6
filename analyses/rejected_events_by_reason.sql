{#-
    Rejected events by reason and connection: what the receiver quarantined (raw table rejected_events, every
    payload kept as received), how many, and when first and last. Each delivery is a row: a sender's retry, or
    the same file ingested twice, quarantines its payloads again, so distinct payloads are counted beside them.
-#}

with

rejected_events as (

    select * from {{ source('segment', 'rejected_events') }}

),

connections as (

    select * from {{ ref('stg_segment__connections') }}

),

final as (

    select
        rejected_events.reason,
        coalesce(connections.connection_name, rejected_events.connection_id) as connection_name,
        count(*) as rejected_count,
        count(distinct rejected_events.payload) as distinct_payload_count,
        min({{ segment_accounts.to_utc_timestamp('rejected_events.received_at') }}) as first_received_at,
        max({{ segment_accounts.to_utc_timestamp('rejected_events.received_at') }}) as last_received_at
    from rejected_events
    left join connections
        on rejected_events.connection_id = connections.connection_id
    group by rejected_events.reason, coalesce(connections.connection_name, rejected_events.connection_id)

)

select * from final
order by rejected_count desc, reason asc, connection_name asc

with

rejected_events as (

    select * from {{ source('segment', 'rejected_events') }}

),

final as (

    select
        connection_id,
        {{ segment_accounts.to_utc_timestamp('received_at') }} as received_at,
        reason,
        payload
    from rejected_events

)

select * from final

with

events as (

    select * from {{ ref('stg_segment__events') }}
    where message_type = 'alias'

),

final as (

    select
        event_id,
        connection_id,
        message_id,
        previous_id,
        user_id,
        anonymous_id,
        context,
        occurred_at,
        received_at
    from events

)

select * from final

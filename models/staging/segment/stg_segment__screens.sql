with

events as (

    select * from {{ ref('stg_segment__events') }}
    where message_type = 'screen'

),

final as (

    select
        event_id,
        connection_id,
        message_id,
        user_id,
        anonymous_id,
        event_name as screen_name,
        category as screen_category,
        properties,
        context,
        context_group_id,
        occurred_at,
        received_at
    from events

)

select * from final

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
        {{ segment_accounts.segment_field('payload', 'previousId') }} as previous_id,
        user_id,
        anonymous_id,
        context,
        occurred_at,
        received_at
    from events

)

select * from final

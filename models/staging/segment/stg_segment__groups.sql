with

events as (

    select * from {{ ref('stg_segment__events') }}
    where message_type = 'group'

),

final as (

    select
        event_id,
        connection_id,
        message_id,
        user_id,
        anonymous_id,
        group_id,
        {{ segment_accounts.json_text('traits', ['name']) }} as group_name,
        traits,
        context,
        occurred_at,
        received_at
    from events

)

select * from final

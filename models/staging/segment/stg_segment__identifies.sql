with

events as (

    select * from {{ ref('stg_segment__events') }}
    where message_type = 'identify'

),

final as (

    select
        event_id,
        connection_id,
        message_id,
        user_id,
        anonymous_id,
        traits,
        {{ segment_accounts.json_value('context', ['traits']) }} as context_traits,
        traits_email as email,
        context,
        context_group_id,
        occurred_at,
        received_at
    from events

)

select * from final

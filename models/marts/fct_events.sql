with

events as (

    select * from {{ ref('stg_segment__events') }}

),

connections as (

    select * from {{ ref('stg_segment__connections') }}

),

events_identified as (

    select * from {{ ref('int_events_identified') }}

),

events_attributed as (

    select * from {{ ref('int_events_attributed') }}

),

final as (

    select
        events.event_id,
        events.message_id,
        connections.connection_name,
        events.message_type,
        events.event_type,
        events.event_name,
        events_identified.contact_id,
        events_attributed.account_id,
        events_identified.user_id,
        events_identified.anonymous_id,
        events_identified.previous_id,
        events.occurred_at,
        events.received_at,
        events.properties,
        events.traits,
        events.context
    from events
    left join connections
        on events.connection_id = connections.connection_id
    left join events_identified
        on events.event_id = events_identified.event_id
    left join events_attributed
        on events.event_id = events_attributed.event_id

)

select * from final

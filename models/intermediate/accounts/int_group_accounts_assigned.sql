{#- Rule "accounts (1)": on `group` connections, a contact's account is the groupId of its most recent group call. -#}

with

group_calls as (

    select * from {{ ref('stg_segment__groups') }}

),

connections as (

    select * from {{ ref('stg_segment__connections') }}

),

events_identified as (

    select * from {{ ref('int_events_identified') }}

),

group_calls_by_recency as (

    select
        events_identified.contact_id,
        {{ segment_accounts.clean_identifier('group_calls.group_id') }} as account_id,
        row_number() over (
            partition by events_identified.contact_id
            order by group_calls.occurred_at desc, group_calls.received_at desc, group_calls.message_id desc
        ) as recency_rank
    from group_calls
    inner join connections
        on group_calls.connection_id = connections.connection_id
    inner join events_identified
        on group_calls.event_id = events_identified.event_id
    where
        connections.account_mapping = 'group'
        and events_identified.contact_id is not null
        and {{ segment_accounts.clean_identifier('group_calls.group_id') }} is not null

),

final as (

    select
        contact_id,
        account_id
    from group_calls_by_recency
    where recency_rank = 1

)

select * from final

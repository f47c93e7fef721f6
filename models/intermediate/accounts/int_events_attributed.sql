{#-
    Rule "event attribution": an event's account is its own groupId when it names one (context.groupId, or the
    groupId of a group call), else its contact's account. Staging reads both ids in its one pass, so this needs
    no second look at the group calls.
-#}

with

events as (

    select * from {{ ref('stg_segment__events') }}

),

events_identified as (

    select * from {{ ref('int_events_identified') }}

),

contact_accounts as (

    select * from {{ ref('int_contact_accounts_resolved') }}

),

final as (

    select
        events.event_id,
        events_identified.contact_id,
        coalesce(
            {{ segment_accounts.clean_identifier('events.context_group_id') }},
            {{ segment_accounts.clean_identifier('events.group_id') }},
            contact_accounts.account_id
        ) as account_id,
        events.occurred_at
    from events
    inner join events_identified
        on events.event_id = events_identified.event_id
    left join contact_accounts
        on events_identified.contact_id = contact_accounts.contact_id

)

select * from final

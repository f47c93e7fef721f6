{#-
    Rule "event attribution": an event's account is its own groupId when it names one (context.groupId, or the
    groupId of a group call), else its contact's account.
-#}

with

events as (

    select * from {{ ref('stg_segment__events') }}

),

groups as (

    select * from {{ ref('stg_segment__groups') }}

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
            {{ segment_accounts.clean_identifier('groups.group_id') }},
            contact_accounts.account_id
        ) as account_id,
        events.occurred_at
    from events
    inner join events_identified
        on events.event_id = events_identified.event_id
    left join groups
        on events.event_id = groups.event_id
    left join contact_accounts
        on events_identified.contact_id = contact_accounts.contact_id

)

select * from final

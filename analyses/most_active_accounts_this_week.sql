{#-
    Most active accounts this week: distinct people active and events in the 7 days up to now (or var
    segment_accounts__account_activity_as_of), busiest first.
-#}

with

events as (

    select * from {{ ref('fct_events') }}

),

accounts as (

    select * from {{ ref('dim_accounts') }}

),

this_week as (

    select
        account_id,
        count(distinct contact_id) as active_contact_count,
        count(*) as event_count,
        max(occurred_at) as last_event_at
    from events
    where
        account_id is not null
        and occurred_at > {{ dbt.dateadd('day', -7, segment_accounts.activity_as_of()) }}
        and occurred_at <= {{ segment_accounts.activity_as_of() }}
    group by account_id

),

final as (

    select
        accounts.account_id,
        accounts.account_name,
        this_week.active_contact_count,
        this_week.event_count,
        accounts.contact_count,
        this_week.last_event_at
    from this_week
    inner join accounts
        on this_week.account_id = accounts.account_id

)

select * from final
order by active_contact_count desc, event_count desc, account_id asc

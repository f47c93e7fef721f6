{#-
    One row per account: how many contacts it has, how many were active in the last 7 and 30 days, when it
    was last seen and what its people did most in the last 30 days. "Now" is the build time, or the var
    `segment_accounts__account_activity_as_of` (an ISO timestamp) for reproducible reports and tests.
-#}

{%- set as_of = var('segment_accounts__account_activity_as_of') -%}

with

accounts as (

    select * from {{ ref('dim_accounts') }}

),

events as (

    select * from {{ ref('fct_events') }}

),

as_of as (

    select
        {% if as_of %}{{ segment_accounts.iso8601_to_utc("'" ~ as_of ~ "'") }}
        {%- else %}{{ segment_accounts.utc_now() }}{% endif %} as as_of_at

),

recent_events as (

    select
        events.account_id,
        events.contact_id,
        events.event_name,
        events.occurred_at >= {{ dbt.dateadd('day', -7, 'as_of.as_of_at') }} as is_in_last_7_days
    from events
    cross join as_of
    where
        events.account_id is not null
        and events.occurred_at >= {{ dbt.dateadd('day', -30, 'as_of.as_of_at') }}
        and events.occurred_at <= as_of.as_of_at

),

active_contacts as (

    select
        account_id,
        count(distinct case when is_in_last_7_days then contact_id end) as active_contact_count_7d,
        count(distinct contact_id) as active_contact_count_30d,
        count(*) as event_count_30d
    from recent_events
    group by account_id

),

event_name_counts as (

    select
        account_id,
        event_name,
        count(*) as event_count,
        row_number() over (
            partition by account_id
            order by count(*) desc, event_name asc
        ) as popularity_rank
    from recent_events
    where event_name is not null
    group by account_id, event_name

),

top_events as (

    select
        account_id,
        {{ dbt.listagg(
            measure=dbt.concat(['event_name', "' ('", 'cast(event_count as ' ~ dbt.type_string() ~ ')', "')'"]),
            delimiter_text="', '",
            order_by_clause='order by popularity_rank'
        ) }} as top_events_30d
    from event_name_counts
    where popularity_rank <= 5
    group by account_id

),

joined as (

    select
        accounts.account_id,
        accounts.account_name,
        accounts.contact_count,
        accounts.last_seen_at,
        top_events.top_events_30d,
        as_of.as_of_at,
        coalesce(active_contacts.active_contact_count_7d, 0) as active_contact_count_7d,
        coalesce(active_contacts.active_contact_count_30d, 0) as active_contact_count_30d,
        coalesce(active_contacts.event_count_30d, 0) as event_count_30d
    from accounts
    cross join as_of
    left join active_contacts
        on accounts.account_id = active_contacts.account_id
    left join top_events
        on accounts.account_id = top_events.account_id

),

final as (

    select
        account_id,
        account_name,
        contact_count,
        active_contact_count_7d,
        active_contact_count_30d,
        event_count_30d,
        last_seen_at,
        top_events_30d,
        as_of_at
    from joined

)

select * from final

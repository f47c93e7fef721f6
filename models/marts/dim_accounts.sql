with

accounts as (

    select * from {{ ref('int_accounts_named') }}

),

contact_accounts as (

    select * from {{ ref('int_contact_accounts_resolved') }}

),

events as (

    select * from {{ ref('fct_events') }}

),

contact_counts as (

    select
        account_id,
        count(*) as contact_count
    from contact_accounts
    where account_id is not null
    group by account_id

),

activity as (

    select
        account_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at
    from events
    where account_id is not null
    group by account_id

),

joined as (

    select
        accounts.account_id,
        accounts.account_name,
        accounts.resolution_method,
        accounts.traits,
        activity.first_seen_at,
        activity.last_seen_at,
        coalesce(contact_counts.contact_count, 0) as contact_count
    from accounts
    left join contact_counts
        on accounts.account_id = contact_counts.account_id
    left join activity
        on accounts.account_id = activity.account_id

),

final as (

    select
        account_id,
        account_name,
        resolution_method,
        traits,
        contact_count,
        first_seen_at,
        last_seen_at
    from joined

)

select * from final

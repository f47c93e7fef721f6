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

domain_claims as (

    select * from {{ ref('int_account_domains_claimed') }}

),

claimed_domains as (

    select
        account_id,
        {{ dbt.listagg(
            measure='email_domain',
            delimiter_text="', '",
            order_by_clause='order by email_domain'
        ) }} as claimed_email_domains
    from domain_claims
    group by account_id

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
        accounts.account_id_source,
        accounts.traits,
        claimed_domains.claimed_email_domains,
        activity.first_seen_at,
        activity.last_seen_at,
        coalesce(contact_counts.contact_count, 0) as contact_count
    from accounts
    left join contact_counts
        on accounts.account_id = contact_counts.account_id
    left join activity
        on accounts.account_id = activity.account_id
    left join claimed_domains
        on accounts.account_id = claimed_domains.account_id

),

final as (

    select
        account_id,
        account_name,
        account_id_source,
        traits,
        claimed_email_domains,
        contact_count,
        first_seen_at,
        last_seen_at
    from joined

)

select * from final

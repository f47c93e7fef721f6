{#-
    Events that reached no account, and why, from the rules in docs/contract.md: whose event it was and what
    that contact lacked. The most common reason first.
-#}

with

events as (

    select * from {{ ref('fct_events') }}
    where account_id is null

),

contacts as (

    select * from {{ ref('dim_contacts') }}

),

free_email_domains as (

    select * from {{ ref('int_email_domains_excluded') }}

),

domain_claims as (

    select * from {{ ref('int_account_domains_claimed') }}

),

contested_domains as (

    select distinct email_domain from domain_claims
    where not is_sole_claim

),

event_contacts as (

    select
        events.event_id,
        events.contact_id,
        contacts.is_anonymous,
        contacts.email,
        {{ dbt.split_part('contacts.email', "'@'", 2) }} as email_domain
    from events
    left join contacts
        on events.contact_id = contacts.contact_id

),

reasons as (

    select
        event_contacts.event_id,
        event_contacts.contact_id,
        case
            when event_contacts.contact_id is null then 'no usable user id or anonymous id'
            when event_contacts.is_anonymous then 'anonymous visitor, never identified'
            when event_contacts.email is null then 'no group call, account trait or email'
            when free_email_domains.email_domain is not null then 'free or personal email domain'
            when contested_domains.email_domain is not null then 'email domain claimed by several accounts'
            else 'email seen only on connections without email fallback'
        end as reason
    from event_contacts
    left join free_email_domains
        on event_contacts.email_domain = free_email_domains.email_domain
    left join contested_domains
        on event_contacts.email_domain = contested_domains.email_domain

),

final as (

    select
        reason,
        count(*) as event_count,
        count(distinct contact_id) as contact_count
    from reasons
    group by reason

)

select * from final
order by event_count desc, reason asc

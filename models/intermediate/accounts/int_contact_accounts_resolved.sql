{#-
    Rule "accounts", the precedence: per contact the first that applies of (1) group, (2) traits,
    (3) email domain; `account_resolution_method` says which (none when no rule applied). Rule "domain
    consolidation": a contact that (3) would give its email domain as an account joins instead the one account
    that claims that domain (int_account_domains_claimed, `email_domain_matched`); a domain that two accounts
    claim, or no account, stays a domain account. Var segment_accounts__consolidate_email_domains turns it off.
-#}

with

contacts as (

    select contact_id
    from {{ ref('int_contact_identifiers_resolved') }}
    group by contact_id

),

group_accounts as (

    select * from {{ ref('int_group_accounts_assigned') }}

),

trait_accounts as (

    select * from {{ ref('int_trait_accounts_assigned') }}

),

email_domain_accounts as (

    select * from {{ ref('int_email_domain_accounts_assigned') }}

),

domain_claims as (

    select * from {{ ref('int_account_domains_claimed') }}

),

owned_domains as (

    select
        email_domain,
        account_id
    from domain_claims
    -- with consolidation off (the var), no domain is owned
    where
        is_sole_claim
        and {{ 'true' if var('segment_accounts__consolidate_email_domains') else 'false' }}

),

final as (

    select
        contacts.contact_id,
        coalesce(
            group_accounts.account_id,
            trait_accounts.account_id,
            owned_domains.account_id,
            email_domain_accounts.account_id
        ) as account_id,
        case
            when group_accounts.account_id is not null then 'group'
            when trait_accounts.account_id is not null then 'traits'
            when owned_domains.account_id is not null then 'email_domain_matched'
            when email_domain_accounts.account_id is not null then 'email_domain'
            else 'none'
        end as account_resolution_method
    from contacts
    left join group_accounts
        on contacts.contact_id = group_accounts.contact_id
    left join trait_accounts
        on contacts.contact_id = trait_accounts.contact_id
    left join email_domain_accounts
        on contacts.contact_id = email_domain_accounts.contact_id
    left join owned_domains
        on email_domain_accounts.account_id = owned_domains.email_domain

)

select * from final

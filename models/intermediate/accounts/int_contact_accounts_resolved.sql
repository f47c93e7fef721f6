{#-
    Rule "accounts", the precedence: per contact the first that applies of (1) group, (2) traits,
    (3) email domain; `account_resolution_method` says which (none when no rule applied).
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

final as (

    select
        contacts.contact_id,
        coalesce(
            group_accounts.account_id,
            trait_accounts.account_id,
            email_domain_accounts.account_id
        ) as account_id,
        case
            when group_accounts.account_id is not null then 'group'
            when trait_accounts.account_id is not null then 'traits'
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

)

select * from final

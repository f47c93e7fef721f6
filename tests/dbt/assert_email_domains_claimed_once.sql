{#-
    Rule "domain consolidation": a domain that two or more accounts claim (group traits website / domain /
    email) matches none of them, so its people stay in a domain account of their own. Warns, one row per such
    domain: correct the group traits of the account that should not claim it.
-#}
{{ config(severity='warn') }}

with

domain_claims as (

    select * from {{ ref('int_account_domains_claimed') }}

),

final as (

    select
        email_domain,
        count(*) as claiming_account_count
    from domain_claims
    where not is_sole_claim
    group by email_domain

)

select * from final

{#-
    Free and personal mail domains never make an account: the maintained list (seed free_email_domains) plus
    the user's `deny` overrides, minus the user's `allow` overrides (seed email_domain_overrides).
-#}

with

free_email_domains as (

    select lower(trim(domain)) as email_domain
    from {{ ref('free_email_domains') }}

),

overrides as (

    select
        lower(trim(domain)) as email_domain,
        lower(trim(action)) as override_action
    from {{ ref('email_domain_overrides') }}

),

listed as (

    select email_domain from free_email_domains
    union
    select email_domain from overrides
    where override_action = 'deny'

),

final as (

    select email_domain
    from listed
    where not exists (
        select 1 from overrides
        where
            overrides.email_domain = listed.email_domain
            and overrides.override_action = 'allow'
    )

)

select * from final

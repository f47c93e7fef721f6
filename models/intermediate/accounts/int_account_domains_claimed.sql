{#-
    Rule "domain consolidation", the claims: an account that rule 1 (group) or rule 2 (traits) gave a contact
    claims the domains of its group traits `website`, `domain` and `email` (each trait's latest value across
    the account's group calls, so a newer group call moves a domain), normalised: lowercased; scheme, user,
    `www.`, path, query and port removed. With var segment_accounts__account_domains_from_member_emails it also
    claims its members' work-email domains (off by default: a member's address can be an agency's or a
    contractor's, and one such member would pull every colleague of that agency into the customer's account).
    Free-mail domains are never claimed. `is_sole_claim`: no other account claims the domain (it can match).
-#}

with

group_calls as (

    select * from {{ ref('stg_segment__groups') }}

),

group_accounts as (

    select * from {{ ref('int_group_accounts_assigned') }}

),

trait_accounts as (

    select * from {{ ref('int_trait_accounts_assigned') }}

),

emails as (

    select * from {{ ref('int_contact_emails_collected') }}

),

excluded_domains as (

    select * from {{ ref('int_email_domains_excluded') }}

),

resolved_accounts as (

    select account_id from group_accounts
    union
    select account_id from trait_accounts

),

group_trait_values as (

    -- one row per group call and claiming trait
    {% for trait_name in ['website', 'domain', 'email'] %}
        select
            {{ segment_accounts.clean_identifier('group_id') }} as account_id,
            '{{ trait_name }}' as trait_name,
            nullif(trim({{ segment_accounts.json_text('traits', [trait_name]) }}), '') as claimed_value,
            occurred_at,
            received_at,
            message_id
        from group_calls
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

group_traits_by_recency as (

    select
        account_id,
        claimed_value,
        row_number() over (
            partition by account_id, trait_name
            order by occurred_at desc, received_at desc, message_id desc
        ) as recency_rank
    from group_trait_values
    where
        account_id is not null
        and claimed_value is not null

),

member_emails_by_recency as (

    select
        emails.email_domain as claimed_value,
        coalesce(group_accounts.account_id, trait_accounts.account_id) as account_id,
        row_number() over (
            partition by emails.contact_id
            order by emails.occurred_at desc, emails.received_at desc, emails.message_id desc
        ) as recency_rank
    from emails
    left join group_accounts
        on emails.contact_id = group_accounts.contact_id
    left join trait_accounts
        on emails.contact_id = trait_accounts.contact_id
    where coalesce(group_accounts.account_id, trait_accounts.account_id) is not null

),

claimed_values as (

    select
        account_id,
        claimed_value,
        'group_traits' as claim_source
    from group_traits_by_recency
    where recency_rank = 1

    union all

    select
        account_id,
        claimed_value,
        'member_emails' as claim_source
    from member_emails_by_recency
    -- members' domains claim nothing unless the var says so
    where
        recency_rank = 1
        and {{ 'true' if var('segment_accounts__account_domains_from_member_emails') else 'false' }}

),

lowercased as (

    -- a query or fragment ends the host as a path does
    select
        account_id,
        claim_source,
        replace(replace(lower(trim(claimed_value)), '?', '/'), '#', '/') as domain_text
    from claimed_values

),

without_scheme as (

    select
        account_id,
        claim_source,
        case
            when {{ dbt.position("'://'", 'domain_text') }} > 0
                then substr(domain_text, {{ dbt.position("'://'", 'domain_text') }} + 3)
            else domain_text
        end as domain_text
    from lowercased

),

without_path as (

    select
        account_id,
        claim_source,
        {{ dbt.split_part('domain_text', "'/'", 1) }} as domain_text
    from without_scheme

),

without_user as (

    -- an email trait, or user@ in a URL: the host is what follows the @
    select
        account_id,
        claim_source,
        case
            when {{ dbt.position("'@'", 'domain_text') }} > 0
                then substr(domain_text, {{ dbt.position("'@'", 'domain_text') }} + 1)
            else domain_text
        end as domain_text
    from without_path

),

without_port as (

    select
        account_id,
        claim_source,
        {{ dbt.split_part('domain_text', "':'", 1) }} as domain_text
    from without_user

),

without_www as (

    select
        account_id,
        claim_source,
        case
            when substr(domain_text, 1, 4) = 'www.' then substr(domain_text, 5)
            else domain_text
        end as email_domain
    from without_port

),

domain_claims as (

    -- one row per account and domain; a domain from group traits and from members counts as group traits
    select
        without_www.account_id,
        without_www.email_domain,
        min(without_www.claim_source) as claim_source
    from without_www
    inner join resolved_accounts
        on without_www.account_id = resolved_accounts.account_id
    where
        {{ segment_accounts.regexp_like('without_www.email_domain', "'^[^.@ ]+([.][^.@ ]+)+$'") }}
        and not exists (
            select 1 from excluded_domains
            where excluded_domains.email_domain = without_www.email_domain
        )
    group by without_www.account_id, without_www.email_domain

),

final as (

    select
        account_id,
        email_domain,
        claim_source,
        count(*) over (partition by email_domain) = 1 as is_sole_claim
    from domain_claims

)

select * from final

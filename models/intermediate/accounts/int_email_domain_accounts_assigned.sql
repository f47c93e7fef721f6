{#-
    Rule "accounts (3)", the email fallback: the lowercased domain of the contact's latest email, seen on a
    connection that maps accounts by email or has email_fallback on; no account when that domain is a free or
    personal mail domain (int_email_domains_excluded). The latest email decides: an older work address does
    not win over a newer personal one.
-#}

with

emails as (

    select * from {{ ref('int_contact_emails_collected') }}

),

connections as (

    select * from {{ ref('stg_segment__connections') }}

),

excluded_domains as (

    select * from {{ ref('int_email_domains_excluded') }}

),

emails_by_recency as (

    select
        emails.contact_id,
        emails.email_domain,
        row_number() over (
            partition by emails.contact_id
            order by emails.occurred_at desc, emails.received_at desc, emails.message_id desc
        ) as recency_rank
    from emails
    inner join connections
        on emails.connection_id = connections.connection_id
    where
        connections.account_mapping = 'email'
        or connections.has_email_fallback

),

final as (

    select
        contact_id,
        email_domain as account_id
    from emails_by_recency
    where
        recency_rank = 1
        and not exists (
            select 1 from excluded_domains
            where excluded_domains.email_domain = emails_by_recency.email_domain
        )

)

select * from final

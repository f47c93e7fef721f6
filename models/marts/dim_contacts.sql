with

contact_identifiers as (

    select * from {{ ref('int_contact_identifiers_resolved') }}

),

events_identified as (

    select * from {{ ref('int_events_identified') }}

),

emails as (

    select * from {{ ref('int_contact_emails_collected') }}

),

contact_traits as (

    select * from {{ ref('int_contact_traits_merged') }}

),

contact_accounts as (

    select * from {{ ref('int_contact_accounts_resolved') }}

),

contacts as (

    select
        contact_id,
        -- every identifier of a contact shares its canonical user id (null for an anonymous contact)
        max(canonical_user_id) as user_id,
        max(canonical_user_id) is null as is_anonymous
    from contact_identifiers
    group by contact_id

),

activity as (

    select
        contact_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as event_count
    from events_identified
    where contact_id is not null
    group by contact_id

),

emails_by_recency as (

    select
        contact_id,
        email,
        row_number() over (
            partition by contact_id
            order by occurred_at desc, received_at desc, message_id desc
        ) as recency_rank
    from emails

),

final as (

    select
        contacts.contact_id,
        contacts.user_id,
        contacts.is_anonymous,
        emails_by_recency.email,
        contact_traits.traits,
        contact_accounts.account_id,
        contact_accounts.account_resolution_method as account_assigned_by,
        activity.first_seen_at,
        activity.last_seen_at,
        coalesce(activity.event_count, 0) as event_count
    from contacts
    left join activity
        on contacts.contact_id = activity.contact_id
    left join emails_by_recency
        on
            contacts.contact_id = emails_by_recency.contact_id
            and emails_by_recency.recency_rank = 1
    left join contact_traits
        on contacts.contact_id = contact_traits.contact_id
    left join contact_accounts
        on contacts.contact_id = contact_accounts.contact_id

)

select * from final

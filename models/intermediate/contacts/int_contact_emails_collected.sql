{#-
    The emails seen for a contact: for each of its ids, the latest email on each connection (rule "emails", in
    int_identifier_calls_summarized, which keeps these incrementally). Its readers take a contact's latest, on
    any connection (dim_contacts) or on those whose settings let an email name an account; the domain is the
    part after the @.
-#}

with

identifier_calls as (

    select * from {{ ref('int_identifier_calls_summarized') }}

),

contact_identifiers as (

    select * from {{ ref('int_contact_identifiers_resolved') }}

),

latest_emails as (

    -- a call belongs to the contact of its user id, else of its anonymous id (int_events_identified)
    select
        event_id,
        identifier,
        connection_id,
        email,
        occurred_at,
        received_at,
        message_id,
        {{ segment_accounts.call_identifier_type('user_id') }} as identifier_type
    from identifier_calls
    where
        identifier_role = 'email'
        and bound = 'last'

),

final as (

    select
        latest_emails.event_id,
        contact_identifiers.contact_id,
        latest_emails.connection_id,
        latest_emails.email,
        {{ dbt.split_part('latest_emails.email', "'@'", 2) }} as email_domain,
        latest_emails.occurred_at,
        latest_emails.received_at,
        latest_emails.message_id
    from latest_emails
    inner join contact_identifiers
        on
            latest_emails.identifier = contact_identifiers.identifier
            and latest_emails.identifier_type = contact_identifiers.identifier_type

)

select * from final

{#-
    Every email seen for a contact: `email` from an identify's traits, or from context.traits of any event
    (analytics.js copies the user's traits there). Lowercased; the domain is the part after the @.
-#}

with

events as (

    select * from {{ ref('stg_segment__events') }}

),

events_identified as (

    select * from {{ ref('int_events_identified') }}

),

emails as (

    select
        event_id,
        connection_id,
        lower(trim(coalesce(
            case when message_type = 'identify' then traits_email end,
            context_traits_email
        ))) as email
    from events

),

final as (

    select
        emails.event_id,
        events_identified.contact_id,
        emails.connection_id,
        emails.email,
        {{ dbt.split_part('emails.email', "'@'", 2) }} as email_domain,
        events_identified.occurred_at,
        events_identified.received_at,
        events_identified.message_id
    from emails
    inner join events_identified
        on emails.event_id = events_identified.event_id
    where
        events_identified.contact_id is not null
        and {{ segment_accounts.regexp_like('emails.email', "'^[^@ ]+@[^@ ]+[.][^@ ]+$'") }}

)

select * from final

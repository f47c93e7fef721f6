{#-
    Each event's contact: by its user id when it has a usable one, else by its anonymous id. One lookup per
    event: every cleaned user id is an identifier of type user_id (int_user_ids_merged lists them all), so an
    event with a user id always finds its contact by it and never needs its anonymous id.
-#}

with

identifiers as (

    select * from {{ ref('int_identifiers_cleaned') }}

),

contact_identifiers as (

    select * from {{ ref('int_contact_identifiers_resolved') }}

),

final as (

    select
        identifiers.event_id,
        identifiers.user_id,
        identifiers.anonymous_id,
        identifiers.previous_id,
        identifiers.occurred_at,
        identifiers.received_at,
        identifiers.message_id,
        contact_identifiers.contact_id
    from identifiers
    left join contact_identifiers
        on
            coalesce(identifiers.user_id, identifiers.anonymous_id) = contact_identifiers.identifier
            and case
                when identifiers.user_id is not null then 'user_id' else 'anonymous_id'
            end = contact_identifiers.identifier_type

)

select * from final

{#- Each event's contact: by its user id when it has a usable one, else by its anonymous id. -#}

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
        identifiers.occurred_at,
        identifiers.received_at,
        identifiers.message_id,
        coalesce(by_user_id.contact_id, by_anonymous_id.contact_id) as contact_id
    from identifiers
    left join contact_identifiers as by_user_id
        on
            identifiers.user_id = by_user_id.identifier
            and by_user_id.identifier_type = 'user_id'
    left join contact_identifiers as by_anonymous_id
        on
            identifiers.anonymous_id = by_anonymous_id.identifier
            and by_anonymous_id.identifier_type = 'anonymous_id'

)

select * from final

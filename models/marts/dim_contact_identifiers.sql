with

contact_identifiers as (

    select * from {{ ref('int_contact_identifiers_resolved') }}

),

final as (

    select
        identifier,
        identifier_type,
        contact_id
    from contact_identifiers

)

select * from final

{#-
    The alias graph was fully resolved within var('segment_accounts__identity_max_rounds') rounds of connected_components:
    both ends of every alias share one canonical user id. Fails (error) otherwise: raise the var.
-#}

with

identifiers as (

    select * from {{ ref('int_identifiers_cleaned') }}

),

user_ids as (

    select * from {{ ref('int_user_ids_merged') }}

),

final as (

    select
        identifiers.event_id,
        previous_ids.canonical_user_id as previous_id_canonical_user_id,
        user_ids.canonical_user_id
    from identifiers
    inner join user_ids as previous_ids
        on identifiers.previous_id = previous_ids.user_id
    inner join user_ids
        on identifiers.user_id = user_ids.user_id
    where
        identifiers.message_type = 'alias'
        and previous_ids.canonical_user_id <> user_ids.canonical_user_id

)

select * from final

{#-
    Every identifier seen, with the contact it resolves to. A contact is a canonical user id (with all the user
    ids merged into it and the anonymous ids attached to them), or a lone anonymous id. See macro contact_id.
-#}

with

user_ids as (

    select * from {{ ref('int_user_ids_merged') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

user_id_identifiers as (

    select
        user_id as identifier,
        'user_id' as identifier_type,
        canonical_user_id
    from user_ids
    -- a previousId that was only ever an anonymous id is listed once, as an anonymous id
    where
        is_seen_as_user_id
        or not exists (
            select 1 from anonymous_ids
            where anonymous_ids.anonymous_id = user_ids.user_id
        )

),

anonymous_id_identifiers as (

    select
        anonymous_id as identifier,
        'anonymous_id' as identifier_type,
        canonical_user_id
    from anonymous_ids

),

identifiers as (

    select * from user_id_identifiers
    union all
    select * from anonymous_id_identifiers

),

final as (

    select
        identifier,
        identifier_type,
        {{ segment_accounts.contact_id('canonical_user_id', 'identifier') }} as contact_id,
        canonical_user_id,
        canonical_user_id is null as is_anonymous
    from identifiers

)

select * from final

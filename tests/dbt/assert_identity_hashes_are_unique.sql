{#- connected_components joins 64-bit hashes of the ids (macro hash64): two ids sharing one would be merged. -#}

with

user_ids as (

    select * from {{ ref('int_user_ids_merged') }}
    where is_aliased

),

final as (

    select
        {{ segment_accounts.hash64('user_id') }} as user_id_hash,
        count(*) as user_id_count
    from user_ids
    group by {{ segment_accounts.hash64('user_id') }}
    having count(*) > 1

)

select * from final

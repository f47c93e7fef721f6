{#-
    Merge protection: one contact gathering more than var('segment_accounts__max_user_ids_per_contact') user ids usually means a
    bad alias (a shared test account, an id like "admin"). Warns with the offending contacts; the data stays.
-#}
{{ config(severity='warn') }}

with

contact_identifiers as (

    select * from {{ ref('dim_contact_identifiers') }}

),

final as (

    select
        contact_id,
        count(*) as user_id_count
    from contact_identifiers
    where identifier_type = 'user_id'
    group by contact_id
    having count(*) > {{ var('segment_accounts__max_user_ids_per_contact') }}

)

select * from final

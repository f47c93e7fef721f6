with

connections as (

    select * from {{ source('segment', 'connections') }}

),

final as (

    select
        connection_id,
        name as connection_name,
        coalesce(lower(account_mapping), 'group') as account_mapping,
        nullif(trim(account_id_trait), '') as account_id_trait,
        nullif(trim(account_name_trait), '') as account_name_trait,
        coalesce(email_fallback, true) as has_email_fallback,
        {{ segment_accounts.iso8601_to_utc('created_at') }} as created_at
    from connections

)

select * from final

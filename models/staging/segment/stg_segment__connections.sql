{#-
    The connection registry as the newest load wrote it. The loader appends the whole registry on every load
    (loaders on several hosts write at once, and appending is the one write that cannot race), so the raw
    table holds one snapshot per load; the newest one is the registry now. One snapshot is one file, loaded
    in one statement: a snapshot is never seen in part.
-#}
with

connections as (

    select * from {{ source('segment', 'connections') }}

),

newest_snapshot as (

    select max(_dlt_load_id) as newest_load_id
    from connections

),

current_connections as (

    select connections.*
    from connections
    inner join newest_snapshot
        on connections._dlt_load_id = newest_snapshot.newest_load_id

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
    from current_connections

)

select * from final

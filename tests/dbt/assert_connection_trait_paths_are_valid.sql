{#-
    A trait path that `connections add` would refuse (edited into connections.json or the raw table by hand)
    would match nothing and silently leave that connection's contacts without an account: the build fails here
    instead, naming the connection. The same rule as pipelines/connections.py (TRAIT_PATH_RE, 255 characters).
-#}

with

connections as (

    select * from {{ ref('stg_segment__connections') }}
    where account_mapping = 'traits'

),

trait_paths as (

    select
        connection_id,
        connection_name,
        'account_id_trait' as setting,
        account_id_trait as trait_path
    from connections
    union all
    select
        connection_id,
        connection_name,
        'account_name_trait' as setting,
        account_name_trait as trait_path
    from connections
    where account_name_trait is not null

),

final as (

    select * from trait_paths
    where
        trait_path is null
        or length(trait_path) > 255
        or not {{ segment_accounts.regexp_like(
            'trait_path', "'^[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z_][A-Za-z0-9_]*){0,7}$'"
        ) }}

)

select * from final
